//! Input checks shared by the shop contexts: trimmed, bounded texts and
//! per-operation quantities. Each context turns a failed check into its own
//! error variant, so the API code stays with the context that rejects.

/// Largest quantity one operation may add, remove, reserve or order: far above
/// any real shipment and far below where sums of many quantities overflow.
pub const MAX_QUANTITY: u32 = 1_000_000;

/// Longest free text (names, reasons, carriers) the shop contexts store.
pub const MAX_TEXT: usize = 200;

/// The trimmed text when it has between 1 and `max` characters.
pub fn trimmed_text(value: &str, max: usize) -> Option<String> {
    let value = value.trim();
    if value.is_empty() || value.chars().count() > max {
        return None;
    }
    Some(value.to_owned())
}

/// Whether a quantity is within `1..=MAX_QUANTITY`.
pub fn quantity_in_range(quantity: u32) -> bool {
    (1..=MAX_QUANTITY).contains(&quantity)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_trimmed_and_bounded() {
        assert_eq!(trimmed_text("  Ada ", 3), Some("Ada".into()));
        assert_eq!(trimmed_text("   ", 3), None);
        assert_eq!(trimmed_text("Adam", 3), None);
        assert_eq!(trimmed_text("ééé", 3), Some("ééé".into()));
    }

    #[test]
    fn quantities_run_from_one_to_a_million() {
        assert!(!quantity_in_range(0));
        assert!(quantity_in_range(1));
        assert!(quantity_in_range(MAX_QUANTITY));
        assert!(!quantity_in_range(MAX_QUANTITY + 1));
    }
}
