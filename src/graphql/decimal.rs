//! The `Decimal` scalar: money on the wire, strictly.
//!
//! Input is a JSON string of digits with at most two decimals and an
//! optional leading minus (`-?[0-9]+(\.[0-9]{1,2})?`). Anything else (a JSON
//! number, an exponent, underscores, a leading `+`, a third decimal) is
//! refused as a `VALIDATION_ERROR`, never rounded or guessed at. Whether a
//! field may be negative or zero is the domain's rule (amounts must be
//! positive, an overdraft limit not negative), so the scalar lets the sign
//! through and the domain refuses it with the field's name. Output is a
//! string with exactly two decimals.

use std::str::FromStr;

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

/// Most digits a money string may have: far beyond any amount the domain
/// accepts, short enough that parsing cannot overflow.
const MAX_DIGITS: usize = 20;

/// Money in the API. The domain decides what amounts mean; this type only
/// guarantees that what arrived was written exactly as money is written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Decimal(pub rust_decimal::Decimal);

/// Money: a string of digits with at most two decimals and an optional
/// leading minus, such as "10", "10.5" or "-3.25". JSON numbers, exponents,
/// underscores, a leading "+" and more decimals are refused. Output always
/// has two decimals.
#[Scalar(name = "Decimal")]
impl ScalarType for Decimal {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => parse_money(text).map(Decimal).map_err(InputValueError::custom),
            _ => Err(InputValueError::custom(
                "money must be a string such as \"10.50\", not a JSON number",
            )),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::String(text) if parse_money(text).is_ok())
    }

    fn to_value(&self) -> Value {
        let mut amount = self.0;
        amount.rescale(2);
        Value::String(amount.to_string())
    }
}

/// `text` as an exact amount, if it is written `-?[0-9]+(\.[0-9]{1,2})?`.
fn parse_money(text: &str) -> Result<rust_decimal::Decimal, String> {
    let refuse = || {
        format!(
            "{text:?} is not an amount: write digits with at most two decimals, such as \"10\" or \"10.50\""
        )
    };
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let well_formed = digits(whole)
        && fraction.is_none_or(|f| digits(f) && f.len() <= 2)
        && whole.len() <= MAX_DIGITS;
    if !well_formed {
        return Err(refuse());
    }
    rust_decimal::Decimal::from_str(text).map_err(|_| refuse())
}

impl From<rust_decimal::Decimal> for Decimal {
    fn from(value: rust_decimal::Decimal) -> Self {
        Decimal(value)
    }
}

impl From<Decimal> for rust_decimal::Decimal {
    fn from(value: Decimal) -> Self {
        value.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(value: Value) -> Option<String> {
        <Decimal as ScalarType>::parse(value).ok().map(|d| d.0.to_string())
    }

    fn text(s: &str) -> Value {
        Value::String(s.to_owned())
    }

    #[test]
    fn money_is_digits_with_at_most_two_decimals() {
        for (input, read) in
            [("10", "10"), ("1.5", "1.5"), ("0.01", "0.01"), ("-3.25", "-3.25"), ("007", "7")]
        {
            assert_eq!(parse(text(input)).as_deref(), Some(read), "{input}");
        }
    }

    #[test]
    fn anything_else_is_refused_never_rounded() {
        let refused = [
            "1e3",
            "1E3",
            "1_000",
            "+5",
            "1.234",
            "1.",
            ".5",
            "",
            "-",
            "1,5",
            " 1",
            "1 ",
            "0x10",
            "NaN",
            "Infinity",
            "1.2.3",
            "--1",
            "١",
            "99999999999999999999999",
        ];
        for input in refused {
            assert_eq!(parse(text(input)), None, "{input:?}");
        }
        assert_eq!(parse(Value::from(5)), None, "a JSON number");
        assert_eq!(parse(Value::from(5.5)), None, "a JSON number");
        assert_eq!(parse(Value::Null), None);
        assert!(!<Decimal as ScalarType>::is_valid(&text("1e3")));
        assert!(<Decimal as ScalarType>::is_valid(&text("1.50")));
    }

    #[test]
    fn output_has_two_decimals() {
        let out = |s: &str| Decimal(rust_decimal::Decimal::from_str(s).unwrap()).to_value();
        assert_eq!(out("10"), text("10.00"));
        assert_eq!(out("1.5"), text("1.50"));
        assert_eq!(out("-0.3"), text("-0.30"));
    }
}
