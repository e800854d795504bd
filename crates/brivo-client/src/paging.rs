//! Walking Brivo's paged lists: `{data, offset, pageSize, count}` with `offset`/`pageSize` query
//! parameters (at most 100 a page).

use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::client::{BrivoClient, Call};
use crate::error::BrivoError;
use crate::filter::Filter;

/// The largest page Brivo serves; fewer pages means fewer calls against the quota.
pub const MAX_PAGE_SIZE: u64 = 100;

/// One page of a list. Some envelopes (`/users/{id}/groups`) carry only `data` and `count`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    #[serde(default)]
    pub offset: Option<u64>,
    #[serde(default)]
    pub page_size: Option<u64>,
    /// The total number of items, when the server says.
    #[serde(default)]
    pub count: Option<u64>,
}

/// Where the page after one that was asked for at `requested_offset` starts, or `None` when that
/// page was the last: it was empty, shorter than a page, or reached `count`. A page counts as
/// full by the size the server says it used (`pageSize` in the answer), so that a server that
/// serves smaller pages than asked for is still walked to the end.
pub(crate) fn next_offset(
    requested_offset: u64,
    requested_size: u64,
    got: usize,
    reported_size: Option<u64>,
    count: Option<u64>,
) -> Option<u64> {
    let got = got as u64;
    let page_size = reported_size
        .filter(|&size| size > 0)
        .unwrap_or(requested_size)
        .min(requested_size);
    if got == 0 || got < page_size {
        return None;
    }
    let next = requested_offset + got;
    match count {
        Some(count) if next >= count => None,
        _ => Some(next),
    }
}

/// Reads a list one page at a time. Use [`Pager::next_page`] to stream, or [`Pager::all`].
#[derive(Debug)]
pub struct Pager<T> {
    client: BrivoClient,
    endpoint: &'static str,
    path: String,
    filter: Option<String>,
    page_size: u64,
    next: Option<u64>,
    /// A bound on pages, in case a server ignored `offset` and kept sending full pages.
    pages_left: u64,
    // `fn() -> T` keeps the pager Send and Sync whatever T is: it holds no T.
    item: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Pager<T> {
    pub(crate) fn new(
        client: &BrivoClient,
        endpoint: &'static str,
        path: String,
        filter: Option<&Filter>,
    ) -> Self {
        Pager {
            client: client.clone(),
            endpoint,
            path,
            filter: filter.filter(|f| !f.is_empty()).map(Filter::to_string),
            page_size: MAX_PAGE_SIZE,
            next: Some(0),
            pages_left: 100_000,
            item: PhantomData,
        }
    }

    /// Asks for smaller pages (1 to 100), e.g. to bound the memory of one step.
    pub fn page_size(mut self, size: u64) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// The next page's items, or `None` when the list is exhausted. A failed page can be asked
    /// for again: the position only moves on success.
    pub async fn next_page(&mut self) -> Result<Option<Vec<T>>, BrivoError> {
        let Some(offset) = self.next else {
            return Ok(None);
        };
        if self.pages_left == 0 {
            self.next = None;
            return Ok(None);
        }
        let mut query = vec![
            ("offset", offset.to_string()),
            ("pageSize", self.page_size.to_string()),
        ];
        if let Some(filter) = &self.filter {
            query.push(("filter", filter.clone()));
        }
        let call = Call::get(self.endpoint, self.path.clone()).query(query);
        let page: Page<T> = self.client.json(&call).await?;
        self.pages_left -= 1;
        self.next = next_offset(
            offset,
            self.page_size,
            page.data.len(),
            page.page_size,
            page.count,
        );
        Ok(Some(page.data))
    }

    /// Every remaining item.
    pub async fn all(mut self) -> Result<Vec<T>, BrivoError> {
        let mut items = Vec::new();
        while let Some(page) = self.next_page().await? {
            items.extend(page);
        }
        Ok(items)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_walk_of_119_users() {
        // ?offset=0&pageSize=100 → 100 rows of count 119, then ?offset=100 → 19 rows.
        assert_eq!(next_offset(0, 100, 100, Some(100), Some(119)), Some(100));
        assert_eq!(next_offset(100, 100, 19, Some(100), Some(119)), None);
    }

    #[test]
    fn stops_at_count_on_a_full_last_page() {
        assert_eq!(next_offset(100, 100, 100, Some(100), Some(200)), None);
        assert_eq!(next_offset(0, 100, 100, None, Some(100)), None);
    }

    #[test]
    fn stops_on_short_or_empty_pages_without_count() {
        assert_eq!(next_offset(0, 100, 100, None, None), Some(100));
        assert_eq!(next_offset(0, 100, 7, None, None), None);
        assert_eq!(next_offset(300, 100, 0, None, None), None);
        // A count the server got wrong cannot make us loop on empty pages.
        assert_eq!(next_offset(0, 100, 0, Some(100), Some(500)), None);
    }

    #[test]
    fn follows_a_server_that_serves_smaller_pages() {
        // Asked for 100, served 20 of 45 and said so: keep going.
        assert_eq!(next_offset(0, 100, 20, Some(20), Some(45)), Some(20));
        assert_eq!(next_offset(40, 100, 5, Some(20), Some(45)), None);
        // A pageSize above what we asked for does not make a short page look full.
        assert_eq!(next_offset(0, 50, 30, Some(100), None), None);
    }

    #[test]
    fn envelope_without_paging_fields() {
        let page: Page<serde_json::Value> =
            serde_json::from_str(r#"{"data":[{"id":1,"name":"Staff"}],"count":1}"#).unwrap();
        assert_eq!(page.data.len(), 1);
        assert_eq!(page.count, Some(1));
        assert_eq!(page.offset, None);
        let page: Page<serde_json::Value> = serde_json::from_str(r#"{"pageSize":20}"#).unwrap();
        assert!(page.data.is_empty());
    }
}
