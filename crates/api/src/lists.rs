//! Listings for people looking at the service (the console, scripts): programs, tasks, workers,
//! and one event stream of every task change. Each shows only what the caller may see: on a
//! service with API keys, the programs it owns and the tasks it submitted or whose program it
//! owns; on an open service, everything.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};
use zkcoproc_coordinator::{Coordinator, CoordinatorError};
use zkcoproc_store::{TaskChange, TaskFilter, TaskStatus};

use crate::access::{Access, Caller};
use crate::{views, ApiError, ApiResult, AppState};

/// Most rows one listing returns.
const MAX_LIST: usize = 500;

/// The store's error as the API's.
fn store(e: zkcoproc_store::StoreError) -> ApiError {
    CoordinatorError::from(e).into()
}

/// Whom the request's API key names.
#[utoipa::path(get, path = "/v1/identity", tag = "service",
    responses((status = 200, description = "the identity the request's API key names (`null` on an open service) \
        and whether the service needs keys", body = Object), crate::openapi::Errors))]
pub(crate) async fn identity(
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
) -> Json<Value> {
    Json(json!({"identity": caller.identity(), "keys_required": access.keyed()}))
}

/// The programs the caller may see.
#[utoipa::path(get, path = "/v1/programs", tag = "programs",
    responses((status = 200, description = "the programs the caller may see (its own, on a service with API keys), \
        newest first, with task counts by status and volume use", body = Object), crate::openapi::Errors))]
pub(crate) async fn programs(State(c): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let programs = c.store().list_programs(caller.identity(), MAX_LIST).await.map_err(store)?;
    let programs: Vec<Value> = programs
        .iter()
        .map(|p| {
            let tasks: BTreeMap<&str, u64> = p.tasks.iter().map(|(s, n)| (s.as_str(), *n)).collect();
            let volume = p.volume.map(|v| {
                let stored = p.volume_blocks.saturating_mul(zkcoproc_vfs::BLOCK_SIZE as u64);
                json!({"version": v.version, "size": v.size, "stored_bytes": stored})
            });
            let mut view = serde_json::to_value(views::program(&p.info)).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut view {
                o.insert("tasks".into(), json!(tasks));
                o.insert("volume".into(), json!(volume));
            }
            view
        })
        .collect();
    Ok(Json(json!({ "programs": programs })))
}

/// Which tasks `GET /v1/tasks` lists.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct TaskQuery {
    /// only tasks in this status
    status: Option<String>,
    /// only tasks of this program (id)
    program: Option<String>,
    /// the next page: tasks listed after the one with this `seq`
    before: Option<i64>,
    /// at most this many (default and maximum 500)
    limit: Option<usize>,
}

/// The tasks the caller may see, newest first, filtered and paged.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", params(TaskQuery),
    responses((status = 200, description = "tasks the caller may see, newest first (`next_before` pages on); \
        `event_seq` is where `GET /v1/events?after=` continues from", body = Object), crate::openapi::Errors))]
pub(crate) async fn tasks(
    State(c): State<AppState>,
    caller: Caller,
    Query(q): Query<TaskQuery>,
) -> ApiResult<Json<Value>> {
    let status = match q.status.as_deref() {
        None | Some("") => None,
        Some(s) => Some(TaskStatus::parse(s).ok_or_else(|| {
            ApiError::bad_request("bad_status", format!("unknown status `{s}`: one of queued, witnessing, proving, verifying, delivering, done, failed, cancelled"))
        })?),
    };
    let program_id = match q.program.as_deref() {
        None | Some("") => None,
        Some(p) => Some(crate::program_id(p)?.to_owned()),
    };
    let limit = q.limit.unwrap_or(MAX_LIST).clamp(1, MAX_LIST);
    let filter =
        TaskFilter { status, program_id, visible_to: caller.identity().map(str::to_owned), before: q.before };
    // The event position first: a change made while the list is read is streamed again, not lost.
    let (_, event_seq) = c.store().task_changes(i64::MAX, 0).await.map_err(store)?;
    let tasks = c.store().list_tasks(filter, limit).await.map_err(store)?;
    let next_before = (tasks.len() == limit).then(|| tasks.last().map(|t| t.seq)).flatten();
    let tasks: Vec<Value> = tasks
        .iter()
        .map(|t| {
            json!({
                "seq": t.seq,
                "id": t.id,
                "program_id": t.program_id,
                "status": t.status.as_str(),
                "created_at": views::rfc3339(t.created_at),
                "updated_at": views::rfc3339(t.updated_at),
                "submitter": t.submitter,
                "error_code": t.error_code,
            })
        })
        .collect();
    Ok(Json(json!({"tasks": tasks, "next_before": next_before, "event_seq": event_seq})))
}

/// Prover workers: how their newest leases ended, and the leases open now.
#[utoipa::path(get, path = "/v1/workers", tag = "workers",
    responses((status = 200, description = "prover workers seen in the newest 500 leases: open leases and \
        outcomes per worker; the open leases of tasks the caller may see", body = Object), crate::openapi::Errors))]
pub(crate) async fn workers(State(c): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let now = c.store().now_ms().await.map_err(store)?;
    let leases = c.store().recent_leases(MAX_LIST).await.map_err(store)?;
    let mut workers: BTreeMap<&str, (BTreeMap<&str, u64>, i64)> = BTreeMap::new();
    let mut open = Vec::new();
    for l in &leases {
        let outcome = match l.outcome.as_deref() {
            Some(o) => o,
            None if l.expires_at <= now => "expired",
            None => "open",
        };
        let entry = workers.entry(&l.worker).or_default();
        *entry.0.entry(outcome).or_default() += 1;
        entry.1 = entry.1.max(l.issued_at);
        if outcome == "open" && visible(&c, &caller, &l.task_id).await? {
            open.push(json!({
                "lease_id": l.lease_id,
                "task_id": l.task_id,
                "worker": l.worker,
                "issued_at": views::rfc3339(l.issued_at),
                "expires_at": views::rfc3339(l.expires_at),
            }));
        }
    }
    let workers: Vec<Value> = workers
        .into_iter()
        .map(|(name, (outcomes, last))| {
            json!({"worker": name, "outcomes": outcomes, "last_lease_at": views::rfc3339(last)})
        })
        .collect();
    Ok(Json(json!({"workers": workers, "open_leases": open})))
}

/// Whether the caller may see task `id` in a listing.
async fn visible(c: &Coordinator, caller: &Caller, id: &str) -> ApiResult<bool> {
    let Some(me) = caller.identity() else { return Ok(true) };
    let Some(task) = c.store().task(id).await.map_err(store)? else { return Ok(false) };
    if task.submitter.as_deref() == Some(me) {
        return Ok(true);
    }
    let owner = c.store().program(&task.program_id).await.map_err(store)?.and_then(|p| p.owner);
    Ok(owner.as_deref() == Some(me))
}

/// Where `GET /v1/events` starts.
#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub(crate) struct EventsQuery {
    /// stream the changes after this event (`event_seq` of `GET /v1/tasks`); default: from now
    after: Option<i64>,
}

/// How far back each read of the event log looks again: on PostgreSQL an event can commit after
/// one with a higher seq (two transactions), and would otherwise be skipped.
const LOOK_BACK: i64 = 64;

/// Every status change of the tasks the caller may see, as it happens.
#[utoipa::path(get, path = "/v1/events", tag = "tasks", params(EventsQuery),
    responses((status = 200, description = "server-sent events: a `task` event {seq, task_id, program_id, status, at} \
        for each status change of a task the caller may see", content_type = "text/event-stream",
        body = crate::openapi::SseEventView),
        crate::openapi::Errors))]
pub(crate) async fn events(
    State(c): State<AppState>,
    caller: Caller,
    axum::Extension(access): axum::Extension<Arc<Access>>,
    Query(q): Query<EventsQuery>,
) -> ApiResult<Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>>> {
    let slot = access.event_streams.take(&caller.quota_key()).await?;
    let cursor = match q.after {
        Some(after) => after.max(0),
        None => c.store().task_changes(i64::MAX, 0).await.map_err(store)?.1,
    };
    struct St {
        _slot: zkcoproc_coordinator::fair::FairPermit,
        c: Arc<Coordinator>,
        me: Option<String>,
        changes: tokio::sync::broadcast::Receiver<String>,
        /// events up to this one were there before the stream started
        floor: i64,
        cursor: i64,
        sent: (HashSet<i64>, VecDeque<i64>),
        pending: VecDeque<Event>,
    }
    let changes = c.subscribe();
    let me = caller.identity().map(str::to_owned);
    let start = St {
        _slot: slot,
        c,
        me,
        changes,
        floor: cursor,
        cursor,
        sent: Default::default(),
        pending: VecDeque::new(),
    };
    let stream = futures_util::stream::unfold(start, |mut st| async move {
        loop {
            if let Some(event) = st.pending.pop_front() {
                return Some((Ok(event), st));
            }
            match st.c.store().task_changes(st.cursor.saturating_sub(LOOK_BACK), MAX_LIST).await {
                Ok((changes, _)) => {
                    for change in changes {
                        if change.seq <= st.floor || !st.sent.0.insert(change.seq) {
                            continue;
                        }
                        st.sent.1.push_back(change.seq);
                        if st.sent.1.len() > 4 * LOOK_BACK as usize {
                            st.sent.1.pop_front().map(|old| st.sent.0.remove(&old));
                        }
                        st.cursor = st.cursor.max(change.seq);
                        if sees(st.me.as_deref(), &change) {
                            st.pending.push_back(Event::default().event("task").data(change_json(&change)));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: store error");
                    return None;
                }
            }
            if st.pending.is_empty() {
                // Wake on a change in this process, or re-read every second (other replicas).
                let deadline = tokio::time::sleep(std::time::Duration::from_secs(1));
                tokio::pin!(deadline);
                tokio::select! {
                    _ = &mut deadline => {}
                    changed = st.changes.recv() => {
                        // No more live changes (shutting down): only the periodic re-read.
                        if let Err(tokio::sync::broadcast::error::RecvError::Closed) = changed {
                            deadline.await;
                        }
                    }
                }
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

fn sees(me: Option<&str>, change: &TaskChange) -> bool {
    me.is_none_or(|me| change.submitter.as_deref() == Some(me) || change.owner.as_deref() == Some(me))
}

fn change_json(c: &TaskChange) -> String {
    json!({
        "seq": c.seq,
        "task_id": c.task_id,
        "program_id": c.program_id,
        "status": c.status.as_str(),
        "at": views::rfc3339(c.at),
    })
    .to_string()
}
