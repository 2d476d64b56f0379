//! Relay connection helpers shared by the list queries.

use async_graphql::OutputType;
use async_graphql::connection::{Connection, Edge};
use uuid::Uuid;

use super::ApiError;
use crate::service::Page;

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// Validates `first` and returns how many rows a page holds.
pub fn page_size(first: Option<i32>) -> Result<u64, ApiError> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(ApiError::validation(format!("first must be between 1 and {MAX_PAGE}")));
    }
    Ok(first as u64)
}

/// Parses an `after` cursor of the id-ordered lists.
pub fn id_cursor(after: Option<&str>) -> Result<Option<Uuid>, ApiError> {
    after.map(|a| Uuid::parse_str(a).map_err(|_| bad_cursor())).transpose()
}

pub fn bad_cursor() -> ApiError {
    ApiError::validation("after is not a cursor from this list")
}

/// Builds a connection from a page; `edge` gives each item's cursor and node.
pub fn connection<T, N: OutputType>(
    page: Page<T>,
    has_previous: bool,
    edge: impl FnMut(T) -> (String, N),
) -> Connection<String, N> {
    let mut connection = Connection::new(has_previous, page.has_next);
    connection
        .edges
        .extend(page.items.into_iter().map(edge).map(|(cursor, node)| Edge::new(cursor, node)));
    connection
}
