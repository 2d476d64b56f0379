//! The registry of every upcaster the domain needs: each stored event shape
//! that changed is brought up to date here, one schema version at a time.

use crate::domain::bank::upcast_account_opened_v1;
use crate::domain::customer::upcast_customer_registered_v1;
use crate::es::upcast::Upcasters;

pub fn upcasters() -> Upcasters {
    let mut upcasters = Upcasters::default();
    // v1 had no email; v2 records it as unknown.
    upcasters.register("CustomerRegistered", 1, upcast_customer_registered_v1);
    // v1 had no owning customer; v2 records the account as owned by none.
    upcasters.register("AccountOpened", 1, upcast_account_opened_v1);
    upcasters
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::fmt::Debug;

    use chrono::{TimeZone, Utc};
    use rust_decimal::Decimal;
    use serde_json::json;
    use uuid::Uuid;

    use super::upcasters;
    use crate::domain::bank::BankEvent;
    use crate::domain::customer::CustomerEvent;
    use crate::domain::invoice::InvoiceEvent;
    use crate::domain::money::Money;
    use crate::domain::order::{OrderEvent, OrderLine};
    use crate::domain::product::ProductEvent;
    use crate::domain::shipment::{ShipmentEvent, ShipmentStatus};
    use crate::es::aggregate::DomainEvent;
    use crate::es::testing::{recorded, stored};

    #[test]
    fn a_stored_v1_customer_registered_decodes_as_v2_with_an_unknown_email() {
        let stored = recorded("CustomerRegistered", 1, json!({ "name": "Ada" }));
        let event: CustomerEvent = upcasters().decode(&stored).unwrap();
        assert_eq!(event, CustomerEvent::CustomerRegistered { name: "Ada".into(), email: None });
    }

    #[test]
    fn a_stored_v1_account_opened_decodes_as_v2_owned_by_no_customer() {
        let v1 = json!({ "owner": "Ada", "initial_deposit": "10.00", "overdraft_limit": "0" });
        let event: BankEvent = upcasters().decode(&recorded("AccountOpened", 1, v1)).unwrap();
        let BankEvent::AccountOpened { owner, customer_id, .. } = event else {
            panic!("decoded as {event:?}")
        };
        assert_eq!((owner.as_str(), customer_id), ("Ada", None));
    }

    /// Asserts that every sample is stored under the name `$match` gives it
    /// and decodes back unchanged. `$match` has no `_` arm, so a new variant
    /// does not compile without its stored name here, and a name that no
    /// sample reaches fails the test: the samples cover every variant.
    macro_rules! assert_stored_names {
        ($event:ty, $samples:expr, { $($variant:pat => $name:literal,)+ }) => {
            assert_round_trips::<$event>(
                &$samples,
                |event| match event { $($variant => $name,)+ },
                &[$($name),+],
            )
        };
    }

    fn assert_round_trips<E: DomainEvent + PartialEq + Debug>(
        samples: &[E],
        stored_name: impl Fn(&E) -> &'static str,
        every_name: &[&'static str],
    ) {
        let mut reached = BTreeSet::new();
        for event in samples {
            let stored = stored(event);
            assert_eq!(stored.event_type, stored_name(event), "stored name of {event:?}");
            let decoded: E = upcasters().decode(&stored).unwrap();
            assert_eq!(&decoded, event);
            reached.insert(stored_name(event));
        }
        let every: BTreeSet<_> = every_name.iter().copied().collect();
        assert_eq!(every.len(), every_name.len(), "two variants share a stored name");
        assert_eq!(reached, every, "every variant needs a sample");
    }

    fn money(cents: i64) -> Money {
        Money::positive(Decimal::new(cents, 2), "test").unwrap()
    }

    fn id(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    #[test]
    fn every_bank_event_round_trips_under_its_stored_name() {
        let samples = [
            BankEvent::AccountOpened {
                owner: "Ada".into(),
                initial_deposit: money(10_000),
                overdraft_limit: money(5_000),
                customer_id: Some(id(3)),
            },
            BankEvent::MoneyDeposited { amount: money(525) },
            BankEvent::MoneyWithdrawn { amount: money(150) },
            BankEvent::CheckWritten { check_number: "7".into(), amount: money(1) },
        ];
        assert_stored_names!(BankEvent, samples, {
            BankEvent::AccountOpened { .. } => "AccountOpened",
            BankEvent::MoneyDeposited { .. } => "MoneyDeposited",
            BankEvent::MoneyWithdrawn { .. } => "MoneyWithdrawn",
            BankEvent::CheckWritten { .. } => "CheckWritten",
        });
    }

    #[test]
    fn every_customer_event_round_trips_under_its_stored_name() {
        let samples = [
            CustomerEvent::CustomerRegistered { name: "Ada".into(), email: Some("a@b.co".into()) },
            CustomerEvent::CustomerRegistered { name: "Ada".into(), email: None },
            CustomerEvent::CustomerEmailChanged { email: "new@b.co".into() },
        ];
        assert_stored_names!(CustomerEvent, samples, {
            CustomerEvent::CustomerRegistered { .. } => "CustomerRegistered",
            CustomerEvent::CustomerEmailChanged { .. } => "CustomerEmailChanged",
        });
    }

    #[test]
    fn every_invoice_event_round_trips_under_its_stored_name() {
        let samples = [InvoiceEvent::InvoiceIssued {
            invoice_id: id(1),
            order_id: id(2),
            total: money(2_150),
            url: "https://invoices.example.com/i/1.pdf".into(),
            issued_at: Utc.with_ymd_and_hms(2025, 1, 16, 14, 30, 0).unwrap(),
        }];
        assert_stored_names!(InvoiceEvent, samples, {
            InvoiceEvent::InvoiceIssued { .. } => "InvoiceIssued",
        });
    }

    #[test]
    fn every_order_event_round_trips_under_its_stored_name() {
        let line = OrderLine {
            product_id: id(1),
            product_name: "Widget".into(),
            unit_price: money(1_000),
            quantity: 2,
        };
        let samples = [
            OrderEvent::OrderCreated {
                customer_id: id(0xC0),
                items: vec![line],
                total: money(2_000),
            },
            OrderEvent::OrderConfirmed,
            OrderEvent::OrderCancelled { reason: "changed my mind".into() },
            OrderEvent::OrderShipped { shipment_id: id(0x5A) },
            OrderEvent::OrderDelivered { shipment_id: id(0x5A) },
            OrderEvent::OrderInvoiced { invoice_id: id(0x1B) },
            OrderEvent::OrderShipmentCreated { shipment_id: id(0x5A) },
        ];
        assert_stored_names!(OrderEvent, samples, {
            OrderEvent::OrderCreated { .. } => "OrderCreated",
            OrderEvent::OrderConfirmed => "OrderConfirmed",
            OrderEvent::OrderCancelled { .. } => "OrderCancelled",
            OrderEvent::OrderShipped { .. } => "OrderShipped",
            OrderEvent::OrderDelivered { .. } => "OrderDelivered",
            OrderEvent::OrderInvoiced { .. } => "OrderInvoiced",
            OrderEvent::OrderShipmentCreated { .. } => "OrderShipmentCreated",
        });
    }

    #[test]
    fn every_product_event_round_trips_under_its_stored_name() {
        let samples = [
            ProductEvent::ProductRegistered { name: "Widget".into(), price: money(999) },
            ProductEvent::StockIncreased { amount: 100, reason: "supplier delivery".into() },
            ProductEvent::StockDecreased { amount: 25, reason: "online sale".into() },
            ProductEvent::StockReserved { order_id: id(1), quantity: 4 },
            ProductEvent::StockReleased { order_id: id(1), quantity: 4 },
        ];
        assert_stored_names!(ProductEvent, samples, {
            ProductEvent::ProductRegistered { .. } => "ProductRegistered",
            ProductEvent::StockIncreased { .. } => "StockIncreased",
            ProductEvent::StockDecreased { .. } => "StockDecreased",
            ProductEvent::StockReserved { .. } => "StockReserved",
            ProductEvent::StockReleased { .. } => "StockReleased",
        });
    }

    #[test]
    fn every_shipment_event_round_trips_under_its_stored_name() {
        let samples = [
            ShipmentEvent::ShipmentCreated {
                order_id: id(2),
                carrier: "Correios".into(),
                tracking_code: "BR123456789".into(),
            },
            ShipmentEvent::ShipmentStatusChanged {
                from: ShipmentStatus::InTransit,
                to: ShipmentStatus::OutForDelivery,
            },
        ];
        assert_stored_names!(ShipmentEvent, samples, {
            ShipmentEvent::ShipmentCreated { .. } => "ShipmentCreated",
            ShipmentEvent::ShipmentStatusChanged { .. } => "ShipmentStatusChanged",
        });
    }
}
