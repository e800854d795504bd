//! Index paging (reference §4): `offset` (default 0) and `pageSize` (default 20, at most 100;
//! larger values are clamped, since the reference leaves that case open), answered as
//! `{"data": […], "offset": N, "pageSize": N, "count": TOTAL}`.

use std::collections::HashMap;

use serde::Serialize;

use crate::api::ApiError;

pub const DEFAULT_PAGE_SIZE: usize = 20;
pub const MAX_PAGE_SIZE: usize = 100;

#[derive(Debug, Clone, Copy)]
pub struct Paging {
    pub offset: usize,
    pub page_size: usize,
}

impl Paging {
    pub fn from_query(params: &HashMap<String, String>) -> Result<Self, ApiError> {
        let offset = match params.get("offset") {
            None => 0,
            Some(v) => v
                .trim()
                .parse::<usize>()
                .map_err(|_| ApiError::invalid_criteria())?,
        };
        Ok(Self {
            offset,
            page_size: page_size(params)?,
        })
    }

    /// Like [`Paging::page`], but builds the shown form only for the rows on the page, which
    /// matters when a large account is read page by page.
    pub fn page_map<T, U: Serialize>(&self, items: Vec<T>, show: impl Fn(T) -> U) -> Page<U> {
        let count = items.len();
        let data = items
            .into_iter()
            .skip(self.offset)
            .take(self.page_size)
            .map(show)
            .collect();
        Page {
            data,
            offset: self.offset,
            page_size: self.page_size,
            count,
        }
    }

    pub fn page<T: Serialize>(&self, items: Vec<T>) -> Page<T> {
        let count = items.len();
        let data = items
            .into_iter()
            .skip(self.offset)
            .take(self.page_size)
            .collect();
        Page {
            data,
            offset: self.offset,
            page_size: self.page_size,
            count,
        }
    }
}

/// `pageSize` from the query: default 20, clamped to 100; zero or non-numeric is a 400.
pub fn page_size(params: &HashMap<String, String>) -> Result<usize, ApiError> {
    match params.get("pageSize") {
        None => Ok(DEFAULT_PAGE_SIZE),
        Some(v) => {
            let n = v
                .trim()
                .parse::<usize>()
                .map_err(|_| ApiError::invalid_criteria())?;
            if n == 0 {
                return Err(ApiError::invalid_criteria());
            }
            Ok(n.min(MAX_PAGE_SIZE))
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Page<T> {
    pub data: Vec<T>,
    pub offset: usize,
    pub page_size: usize,
    pub count: usize,
}

/// The envelope some endpoints use without paging fields: `{"data": […], "count": N}`.
#[derive(Debug, Serialize)]
pub struct DataCount<T> {
    pub data: Vec<T>,
    pub count: usize,
}

impl<T> DataCount<T> {
    pub fn new(data: Vec<T>) -> Self {
        let count = data.len();
        Self { data, count }
    }
}
