//! Read tables of the shop: customers, product stock, and the denormalised
//! orders-with-details view (one row per order, no joins at query time),
//! plus the customer lookup the orders projector keeps for itself. Money is
//! stored in integer cents.

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

#[derive(DeriveIden)]
enum CustomersView {
    Table,
    CustomerId,
    Name,
    Email,
    RegisteredAt,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProductStockView {
    Table,
    ProductId,
    Name,
    PriceCents,
    Stock,
    Reserved,
    LastUpdated,
    Version,
}

#[derive(DeriveIden)]
enum OrdersWithDetailsView {
    Table,
    OrderId,
    Status,
    TotalCents,
    CreatedAt,
    CustomerId,
    CustomerName,
    CustomerEmail,
    CustomerVersion,
    Items,
    InvoiceId,
    InvoiceUrl,
    InvoiceIssuedAt,
    ShippingId,
    ShippingCarrier,
    ShippingTrackingCode,
    ShippingStatus,
    ShippingVersion,
    Version,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum OrderViewCustomers {
    Table,
    CustomerId,
    Name,
    Email,
    Version,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        use CustomersView as C;
        manager
            .create_table(
                Table::create()
                    .table(C::Table)
                    .col(pk_uuid(C::CustomerId))
                    .col(string(C::Name))
                    .col(string_null(C::Email))
                    .col(timestamp_with_time_zone(C::RegisteredAt))
                    .col(big_integer(C::Version))
                    .col(timestamp_with_time_zone(C::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        use ProductStockView as P;
        manager
            .create_table(
                Table::create()
                    .table(P::Table)
                    .col(pk_uuid(P::ProductId))
                    .col(string(P::Name))
                    .col(big_integer(P::PriceCents))
                    .col(big_integer(P::Stock))
                    .col(big_integer(P::Reserved))
                    .col(timestamp_with_time_zone(P::LastUpdated))
                    .col(big_integer(P::Version))
                    .to_owned(),
            )
            .await?;
        use OrdersWithDetailsView as O;
        manager
            .create_table(
                Table::create()
                    .table(O::Table)
                    .col(pk_uuid(O::OrderId))
                    .col(string_len(O::Status, 20))
                    .col(big_integer(O::TotalCents))
                    .col(timestamp_with_time_zone(O::CreatedAt))
                    .col(uuid(O::CustomerId))
                    .col(string(O::CustomerName))
                    .col(string_null(O::CustomerEmail))
                    .col(big_integer(O::CustomerVersion))
                    .col(json(O::Items))
                    .col(uuid_null(O::InvoiceId))
                    .col(text_null(O::InvoiceUrl))
                    .col(timestamp_with_time_zone_null(O::InvoiceIssuedAt))
                    .col(uuid_null(O::ShippingId))
                    .col(string_null(O::ShippingCarrier))
                    .col(string_null(O::ShippingTrackingCode))
                    .col(string_len_null(O::ShippingStatus, 20))
                    .col(big_integer_null(O::ShippingVersion))
                    .col(big_integer(O::Version))
                    .col(timestamp_with_time_zone(O::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        for (name, column) in [
            ("orders_with_details_customer_idx", O::CustomerId),
            ("orders_with_details_status_idx", O::Status),
        ] {
            manager
                .create_index(
                    Index::create()
                        .name(name)
                        .table(O::Table)
                        .col(column)
                        .col(O::OrderId)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("orders_with_details_shipping_idx")
                    .table(O::Table)
                    .col(O::ShippingId)
                    .to_owned(),
            )
            .await?;
        use OrderViewCustomers as L;
        manager
            .create_table(
                Table::create()
                    .table(L::Table)
                    .col(pk_uuid(L::CustomerId))
                    .col(string(L::Name))
                    .col(string_null(L::Email))
                    .col(big_integer(L::Version))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OrderViewCustomers::Table.into_iden(),
            OrdersWithDetailsView::Table.into_iden(),
            ProductStockView::Table.into_iden(),
            CustomersView::Table.into_iden(),
        ] {
            manager.drop_table(Table::drop().table(table).to_owned()).await?;
        }
        Ok(())
    }
}
