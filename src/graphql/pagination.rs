//! Relay connection helpers shared by the list queries.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{OutputType, Result};

use super::ApiError;

pub const DEFAULT_PAGE: i32 = 20;
pub const MAX_PAGE: i32 = 100;

/// Validates `first` and returns how many rows to fetch (one extra to learn
/// whether there is a next page).
pub fn page_size(first: Option<i32>) -> Result<u64, ApiError> {
    let first = first.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&first) {
        return Err(ApiError::validation(format!("first must be between 1 and {MAX_PAGE}")));
    }
    Ok(first as u64)
}

/// Builds a connection from `rows` fetched with `limit + 1`.
pub fn connection<T: OutputType>(
    mut rows: Vec<(String, T)>,
    limit: u64,
    has_previous: bool,
) -> Connection<String, T> {
    let has_next = rows.len() as u64 > limit;
    rows.truncate(limit as usize);
    let mut connection = Connection::new(has_previous, has_next);
    connection.edges.extend(rows.into_iter().map(|(cursor, node)| Edge::new(cursor, node)));
    connection
}
