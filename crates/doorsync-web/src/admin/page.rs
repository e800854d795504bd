//! What every page shares: the layout's data and the error page.

use askama::Template;

/// The frame around every page: its title, the navigation entry it belongs to, who is signed in
/// and the token the sign-out form carries.
pub(crate) struct Layout {
    pub title: String,
    pub nav: &'static str,
    pub email: Option<String>,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "admin/error.html")]
pub(crate) struct ErrorPage<'a> {
    pub l: Layout,
    pub status: u16,
    pub message: &'a str,
}
