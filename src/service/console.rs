//! What the event console needs beyond the other services: the stream
//! types and streams in the log, an aggregate's state at any version
//! (folded from the event store through the domain's own `apply`), and
//! the projection operations — retrying dead letters and rebuilding in the
//! background with progress anyone on the staff can follow.
//!
//! Clerks read everything here; only admins retry or rebuild.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::{Caller, RetryReport, ServiceError, Services};
use crate::domain::bank::BankAccount;
use crate::domain::customer::Customer;
use crate::domain::invoice::Invoice;
use crate::domain::order::Order;
use crate::domain::product::Product;
use crate::domain::shipment::Shipment;
use crate::es::aggregate::Aggregate;
use crate::read_models::Page;
use crate::read_models::audit_log::query::{
    self as audit, StreamFilter, StreamSummary, StreamTypeCount,
};

/// An aggregate's state as JSON, and the version it was folded to.
#[derive(Debug, Clone, PartialEq)]
pub struct FoldedState {
    pub version: i64,
    pub state: serde_json::Value,
}

/// Where a background rebuild is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RebuildPhase {
    Running,
    Done,
    Failed,
}

/// The latest rebuild of one projection started by this process.
#[derive(Debug, Clone, PartialEq)]
pub struct RebuildProgress {
    pub projection: String,
    pub phase: RebuildPhase,
    /// Events replayed so far, of `total`.
    pub applied: u64,
    pub total: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Why it failed, as it may be shown (the detail is in the server log).
    pub error: Option<String>,
}

/// The rebuilds this process started, by projection.
#[derive(Default)]
pub struct Rebuilds(Mutex<HashMap<String, RebuildProgress>>);

impl Rebuilds {
    fn get(&self, name: &str) -> Option<RebuildProgress> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut RebuildProgress)) {
        if let Some(p) = self.0.lock().unwrap_or_else(|p| p.into_inner()).get_mut(name) {
            change(p);
        }
    }

    /// Records a new running rebuild, unless one is running already.
    fn begin(&self, name: &str) -> Result<RebuildProgress, ServiceError> {
        let mut all = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if all.get(name).is_some_and(|p| p.phase == RebuildPhase::Running) {
            return Err(ServiceError::AlreadyRunning(format!(
                "a rebuild of {name} is already running"
            )));
        }
        let progress = RebuildProgress {
            projection: name.to_owned(),
            phase: RebuildPhase::Running,
            applied: 0,
            total: 0,
            started_at: Utc::now(),
            finished_at: None,
            error: None,
        };
        all.insert(name.to_owned(), progress.clone());
        Ok(progress)
    }
}

/// The stream types whose state [`Services::aggregate_state`] can fold.
pub const FOLDABLE: &[&str] = &[
    BankAccount::STREAM_TYPE,
    Customer::STREAM_TYPE,
    Product::STREAM_TYPE,
    Order::STREAM_TYPE,
    Invoice::STREAM_TYPE,
    Shipment::STREAM_TYPE,
];

impl Services {
    /// Every stream type in the log with its numbers of streams and events
    /// (staff).
    pub async fn stream_types(
        &self,
        caller: &Caller,
    ) -> Result<Vec<StreamTypeCount>, ServiceError> {
        caller.require_staff()?;
        Ok(audit::stream_type_counts(&self.read_db).await?)
    }

    /// A page of streams, by id, optionally of one type or one id (staff).
    pub async fn streams(
        &self,
        caller: &Caller,
        filter: &StreamFilter,
        limit: u64,
    ) -> Result<Page<StreamSummary>, ServiceError> {
        caller.require_staff()?;
        Ok(audit::streams_page(&self.read_db, filter, limit).await?)
    }

    /// The state of stream `stream_type`/`id` after version `version` (its
    /// latest when `None`), folded from the event store (staff). `None`
    /// when the stream has no events.
    pub async fn aggregate_state(
        &self,
        caller: &Caller,
        stream_type: &str,
        id: Uuid,
        version: Option<i64>,
    ) -> Result<Option<FoldedState>, ServiceError> {
        caller.require_staff()?;
        if version.is_some_and(|v| v < 1) {
            return Err(ServiceError::invalid("version must be at least 1"));
        }
        match stream_type {
            t if t == BankAccount::STREAM_TYPE => self.fold::<BankAccount>(id, version).await,
            t if t == Customer::STREAM_TYPE => self.fold::<Customer>(id, version).await,
            t if t == Product::STREAM_TYPE => self.fold::<Product>(id, version).await,
            t if t == Order::STREAM_TYPE => self.fold::<Order>(id, version).await,
            t if t == Invoice::STREAM_TYPE => self.fold::<Invoice>(id, version).await,
            t if t == Shipment::STREAM_TYPE => self.fold::<Shipment>(id, version).await,
            other => Err(ServiceError::invalid(format!(
                "unknown stream type {other:?}; known: {}",
                FOLDABLE.join(", ")
            ))),
        }
    }

    async fn fold<A: Aggregate>(
        &self,
        id: Uuid,
        version: Option<i64>,
    ) -> Result<Option<FoldedState>, ServiceError> {
        let Some((state, version)) = self.commands.fold_at::<A>(id, version).await? else {
            return Ok(None);
        };
        let state = serde_json::to_value(&state)
            .map_err(|e| ServiceError::internal(anyhow::Error::new(e).context("state to JSON")))?;
        Ok(Some(FoldedState { version, state }))
    }

    /// [`Services::retry_dead_letters`], for admins.
    pub async fn retry_dead_letters_as(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<RetryReport, ServiceError> {
        caller.require_admin()?;
        self.retry_dead_letters(name).await
    }

    /// Starts rebuilding projection `name` in the background (admins) and
    /// returns its progress; follow it with [`Services::rebuild_progress`].
    pub fn start_rebuild(
        self: &Arc<Self>,
        caller: &Caller,
        name: &str,
    ) -> Result<RebuildProgress, ServiceError> {
        caller.require_admin()?;
        let name = self.projection(name)?.name().to_owned();
        let started = self.rebuilds.begin(&name)?;
        let services = self.clone();
        tokio::spawn(async move {
            let rebuilds = &services.rebuilds;
            let result = services
                .rebuild_projection(&name, |applied, total| {
                    rebuilds.update(&name, |p| (p.applied, p.total) = (applied, total));
                })
                .await;
            rebuilds.update(&name, |p| {
                p.finished_at = Some(Utc::now());
                match result {
                    Ok(report) => {
                        p.phase = RebuildPhase::Done;
                        (p.applied, p.total) = (report.events, report.events.max(p.total));
                    }
                    Err(e) => {
                        tracing::error!(projection = %name, error = %e, "rebuild failed");
                        p.phase = RebuildPhase::Failed;
                        p.error = Some(match e {
                            ServiceError::AlreadyRunning(m) => m,
                            _ => "the rebuild failed; the server log has the detail".into(),
                        });
                    }
                }
            });
        });
        Ok(started)
    }

    /// The latest rebuild of projection `name` this process started, if
    /// any (staff).
    pub fn rebuild_progress(
        &self,
        caller: &Caller,
        name: &str,
    ) -> Result<Option<RebuildProgress>, ServiceError> {
        caller.require_staff()?;
        let name = self.projection(name)?.name();
        Ok(self.rebuilds.get(name))
    }
}
