//! The sweeper (an EventBridge schedule, every minute): ends servers past their deadlines,
//! reconciles server records with ECS tasks, and tops up the warm pool. See
//! `switchboard::lifecycle::sweep`.

/// What this function reads from its environment besides its tables (`switchboard::init`
/// checks exactly this; template.yaml gives exactly this).
pub const NEEDS: &[switchboard::Need] = &[
    switchboard::Need::Ice,
    switchboard::Need::SignalingUrl,
    switchboard::Need::Sockets,
    switchboard::Need::SfuTasks,
    switchboard::Need::WarmRooms,
    switchboard::Need::StartTimeout,
    switchboard::Need::Sessions,
];

use serde_json::Value;
use switchboard::lifecycle::{self, SweepReport};
use switchboard::{Deps, metrics};

#[tracing::instrument(skip_all, fields(route = "sweeper"))]
pub async fn handler(deps: &Deps, _event: Value) -> SweepReport {
    let report = lifecycle::sweep(deps).await;
    // Only what happened: a metric that gets no data costs nothing, and an idle stack's sweeper
    // runs every minute.
    for (metric, count) in [
        (metrics::name::SWEEP_ENDED, report.ended.len()),
        (metrics::name::ORPHANS_STOPPED, report.orphans_stopped.len()),
        (metrics::name::REFILLS, report.launched.len()),
    ] {
        if count > 0 {
            metrics::count(metric, count as u64, &[]);
        }
    }
    tracing::info!(
        outcome = if report.errors.is_empty() {
            "ok"
        } else {
            "errors"
        },
        ended = report.ended.len(),
        orphans_stopped = report.orphans_stopped.len(),
        refills = report.launched.len(),
        errors = report.errors.len(),
        "sweep"
    );
    report
}
