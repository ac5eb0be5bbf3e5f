//! Cursor pagination for every list of the API, as GitHub pages its REST
//! lists: the body stays the list, the next page is the `Link: <…>;
//! rel="next"` header (and `X-Next-Cursor`), and `X-Total-Count` counts every
//! item the filters match. A cursor is opaque: the key of the last item
//! served, so a page never repeats or skips an item when newer ones arrive.

use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::errors::error_coded;

/// `?limit=` and `?cursor=` of a list.
#[derive(Deserialize, Default)]
pub struct PageQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The largest page of any list.
pub(crate) const MAX_LIMIT: i64 = 500;
/// A page when `limit` is absent.
pub(crate) const DEFAULT_LIMIT: i64 = 100;

/// Reads the page asked for, or answers the 400 that says why not.
macro_rules! page_or_400 {
    ($q:expr) => {
        match $q.page($crate::paging::DEFAULT_LIMIT) {
            Ok(p) => p,
            Err(r) => return r,
        }
    };
}
pub(crate) use page_or_400;

/// Where a list resumes: the key of the last item already served.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum Key {
    Int(i64),
    Str(String),
}

impl Key {
    pub(crate) fn encode(&self) -> String {
        let json = serde_json::to_vec(&serde_json::json!({"after": self})).unwrap_or_default();
        URL_SAFE_NO_PAD.encode(json)
    }

    fn decode(cursor: &str) -> Option<Key> {
        let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
        let v: Value = serde_json::from_slice(&bytes).ok()?;
        serde_json::from_value(v.get("after")?.clone()).ok()
    }
}

pub(crate) struct Page {
    pub limit: i64,
    pub after: Option<Key>,
}

impl PageQuery {
    /// The page asked for; a cursor this server did not make is a 400.
    #[allow(clippy::result_large_err)]
    pub(crate) fn page(&self, default: i64) -> Result<Page, Response> {
        let limit = self.limit.unwrap_or(default).clamp(1, MAX_LIMIT);
        let after = match self.cursor.as_deref().filter(|c| !c.is_empty()) {
            None => None,
            Some(c) => Some(Key::decode(c).ok_or_else(|| {
                error_coded(
                    StatusCode::BAD_REQUEST,
                    "invalid_cursor",
                    "`cursor` is not one this server gave out: pass the `cursor` of the previous page's `Link: rel=\"next\"` (or `X-Next-Cursor`) header unchanged",
                )
            })?),
        };
        Ok(Page { limit, after })
    }
}

/// The headers of a page: the total and, when more follow, the next page's link.
pub(crate) fn headers(uri: &Uri, total: i64, next: Option<&Key>) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert("x-total-count", HeaderValue::from(total));
    if let Some(next) = next {
        let cursor = next.encode();
        let mut query = form_urlencoded::Serializer::new(String::new());
        for (k, v) in form_urlencoded::parse(uri.query().unwrap_or("").as_bytes()) {
            if k != "cursor" {
                query.append_pair(&k, &v);
            }
        }
        query.append_pair("cursor", &cursor);
        let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.finish());
        if let Ok(v) = HeaderValue::from_str(&link) {
            h.insert("link", v);
        }
        if let Ok(v) = HeaderValue::from_str(&cursor) {
            h.insert("x-next-cursor", v);
        }
    }
    h
}

/// Pages a whole list held in memory (lists that stay small: repositories,
/// tokens, rules), ordered by `key`, newest first when `newest_first`.
pub(crate) fn slice<T>(
    mut items: Vec<T>,
    key: impl Fn(&T) -> Key,
    newest_first: bool,
    page: &Page,
) -> (Vec<T>, i64, Option<Key>) {
    let total = items.len() as i64;
    items.sort_by_key(&key);
    if newest_first {
        items.reverse();
    }
    let rest: Vec<T> = items
        .into_iter()
        .filter(|i| match &page.after {
            None => true,
            Some(a) if newest_first => key(i) < *a,
            Some(a) => key(i) > *a,
        })
        .collect();
    let more = rest.len() as i64 > page.limit;
    let mut out = rest;
    out.truncate(page.limit as usize);
    let next = if more { out.last().map(&key) } else { None };
    (out, total, next)
}

/// A page of a list as the JSON array body with its headers.
pub(crate) fn respond<T: Serialize>(
    uri: &Uri,
    items: Vec<T>,
    key: impl Fn(&T) -> Key,
    newest_first: bool,
    page: &Page,
) -> Response {
    let (out, total, next) = slice(items, key, newest_first, page);
    (headers(uri, total, next.as_ref()), axum::Json(out)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_list_once_in_order() {
        let items: Vec<i64> = (1..=7).collect();
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = Page { limit: 3, after };
            let (out, total, next) = slice(items.clone(), |i| Key::Int(*i), true, &page);
            assert_eq!(total, 7);
            seen.extend(out);
            match next {
                Some(n) => after = Some(Key::decode(&n.encode()).unwrap()),
                None => break,
            }
        }
        assert_eq!(seen, vec![7, 6, 5, 4, 3, 2, 1]);
    }

    #[test]
    fn a_foreign_cursor_is_refused() {
        let q = PageQuery {
            limit: None,
            cursor: Some("not-a-cursor".into()),
        };
        assert!(q.page(10).is_err());
        assert_eq!(
            Key::decode(&Key::Str("b".into()).encode()),
            Some(Key::Str("b".into()))
        );
    }
}
