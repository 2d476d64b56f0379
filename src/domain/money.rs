//! Money as exact decimals, parsed at the edge into values that are valid by
//! construction.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::es::aggregate::{Rejection, RejectionKind};

/// Largest amount accepted in one operation: far above any real transfer and
/// far below where sums of many amounts could overflow a `Decimal`.
pub const MAX_AMOUNT: Decimal = Decimal::from_parts(2_764_472_320, 232_830, 0, false, 0); // 1e15

/// Largest balance, and largest running total (an account's total
/// deposits or total withdrawals), the domain lets an aggregate reach:
/// 10^16, that is 10^18 cents. The read models keep money as `i64` cents
/// (at most about 9.2 * 10^18), so every balance and total stays
/// representable, about nine times inside that bound, whatever the order
/// of operations. A command that would pass it is refused, never folded
/// into a number a projector cannot store. An operation that reaches it
/// exactly is allowed.
pub const MAX_TOTAL: Decimal = Decimal::from_parts(1_874_919_424, 2_328_306, 0, false, 0); // 1e16

/// Money never has more than this many fractional digits.
pub const MONEY_SCALE: u32 = 2;

/// A non-negative amount with at most two decimal places.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Money(#[serde(with = "rust_decimal::serde::str")] Decimal);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("{field} must be greater than zero")]
    NotPositive { field: &'static str },
    #[error("{field} must not be negative")]
    Negative { field: &'static str },
    #[error("{field} must have at most {MONEY_SCALE} decimal places")]
    TooPrecise { field: &'static str },
    #[error("{field} must not exceed {MAX_AMOUNT}")]
    TooLarge { field: &'static str },
}

impl Rejection for MoneyError {
    fn kind(&self) -> RejectionKind {
        RejectionKind::Validation
    }
}

impl Money {
    pub const ZERO: Money = Money(Decimal::ZERO);

    /// An amount that must be strictly positive (deposits, withdrawals, prices).
    pub fn positive(value: Decimal, field: &'static str) -> Result<Self, MoneyError> {
        let money = Self::non_negative(value, field)?;
        if money.0.is_zero() {
            return Err(MoneyError::NotPositive { field });
        }
        Ok(money)
    }

    /// An amount that may be zero (initial deposit, overdraft limit).
    pub fn non_negative(value: Decimal, field: &'static str) -> Result<Self, MoneyError> {
        if value.is_sign_negative() && !value.is_zero() {
            return Err(MoneyError::Negative { field });
        }
        if value.normalize().scale() > MONEY_SCALE {
            return Err(MoneyError::TooPrecise { field });
        }
        if value > MAX_AMOUNT {
            return Err(MoneyError::TooLarge { field });
        }
        let mut value = value.normalize();
        value.rescale(MONEY_SCALE);
        Ok(Money(value))
    }

    pub fn amount(self) -> Decimal {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn max_amount_is_ten_to_the_fifteenth() {
        assert_eq!(MAX_AMOUNT, d("1000000000000000"));
    }

    #[test]
    fn max_total_is_ten_to_the_sixteenth_and_fits_i64_cents() {
        assert_eq!(MAX_TOTAL, d("10000000000000000"));
        let cents = (MAX_TOTAL * Decimal::ONE_HUNDRED).mantissa();
        assert!(cents * 9 < i128::from(i64::MAX), "room for a factor of nine");
        assert!(MAX_AMOUNT < MAX_TOTAL, "one operation never reaches it alone");
    }

    #[test]
    fn money_is_normalised_to_two_places() {
        assert_eq!(Money::positive(d("1.5"), "x").unwrap().amount().to_string(), "1.50");
        assert_eq!(Money::positive(d("2.000"), "x").unwrap().amount().to_string(), "2.00");
    }

    #[test]
    fn invalid_amounts_are_rejected() {
        assert_eq!(Money::positive(d("0"), "a"), Err(MoneyError::NotPositive { field: "a" }));
        assert_eq!(Money::positive(d("-1"), "a"), Err(MoneyError::Negative { field: "a" }));
        assert_eq!(Money::positive(d("0.001"), "a"), Err(MoneyError::TooPrecise { field: "a" }));
        assert_eq!(
            Money::positive(d("1000000000000000.01"), "a"),
            Err(MoneyError::TooLarge { field: "a" })
        );
        assert!(Money::non_negative(d("0"), "a").is_ok());
    }
}
