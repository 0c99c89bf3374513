//! The meeting on the server side, all in the `discussion` document (written only here): the
//! timebox (the server holds the clock), where the agenda stands, action items, the read count,
//! and the review's settings. Each function runs as a job on the document's owner.
//!
//! Shape (`docs/schema.md`): root map `meeting` {timer: {state, endsAt, remainingMs, durationMs},
//! agenda, readCount}; root map `actions`: id → map {id, what, why, kind, owner, link, due,
//! status, createdAt, updatedAt, history}; `review.hints` (blameless-language hints on or off).
//! `history` is who set each status and when (named activity: the session's display name).

use std::collections::HashMap;

use debrief_proto::schema::discussion::REVIEW;
use serde::{Deserialize, Serialize};
use yrs::{Any, Doc, Map, MapPrelim, MapRef, Out, Transact};

use super::basics::{now_ms, random_hex};
use super::fields::validate_date;
use super::policy::{Phase, Role};
use super::problem::{Problem, ProblemKind};
use super::threads::Outcome;
use super::trackers::{link_host, Trackers};

/// Root map of the meeting's state.
pub const MEETING: &str = "meeting";
/// Root map of action items.
pub const ACTIONS: &str = "actions";
/// Most action items in one review.
pub const MAX_ACTIONS: u32 = 200;
/// Longest timebox, in minutes: a post-mortem meeting, not a workshop.
pub const MAX_TIMER_MINUTES: u64 = 240;

/// Most status changes an action item's history keeps (the first, its creation, and the latest).
pub const MAX_HISTORY: usize = 20;

/// Longest agenda label.
pub const MAX_AGENDA_CHARS: usize = 200;

/// Refuses what is done only during the meeting (the timebox, the agenda) in another phase.
pub fn during_meeting(phase: Phase) -> Result<(), Problem> {
    if phase == Phase::Meeting {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::Conflict,
            "not_in_meeting",
            "this is done during the meeting",
        ))
    }
}

/// Refuses changes to action items outside review and the meeting.
pub fn actions_open(phase: Phase) -> Result<(), Problem> {
    if matches!(phase, Phase::Review | Phase::Meeting) {
        Ok(())
    } else {
        Err(Problem::new(
            ProblemKind::Forbidden,
            "not_allowed",
            "action items are written by the team during review and the meeting",
        ))
    }
}

/// Refuses marking the report read once the review is closed.
pub fn reading_open(phase: Phase) -> Result<(), Problem> {
    if phase == Phase::Closed {
        Err(Problem::new(
            ProblemKind::Conflict,
            "review_closed",
            "the review is closed",
        ))
    } else {
        Ok(())
    }
}

/// Whether `role` may move an action item's status in `phase`: anyone but observers, from review
/// on, closed reviews included (following actions through is what happens after the meeting).
pub fn may_move_actions(role: Role, phase: Phase) -> Result<(), Problem> {
    if role == Role::Observer {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "not_allowed",
            "observers read along; action items are moved by the team",
        ));
    }
    statuses_open(phase)
}

/// Refuses status changes while the review is in draft (it has no action items yet).
pub fn statuses_open(phase: Phase) -> Result<(), Problem> {
    if phase == Phase::Draft {
        Err(Problem::new(
            ProblemKind::Forbidden,
            "not_allowed",
            "a review in draft has no action items to move",
        ))
    } else {
        Ok(())
    }
}

/// Whether `role` may add and change action items in `phase`: anyone but observers, in review
/// and the meeting.
pub fn may_write_actions(role: Role, phase: Phase) -> Result<(), Problem> {
    if role == Role::Observer {
        return Err(Problem::new(
            ProblemKind::Forbidden,
            "not_allowed",
            "observers read along; action items are written by the team",
        ));
    }
    actions_open(phase)
}

/// What the facilitator does with the timebox: `start` a timebox of `minutes` (also over a
/// running or paused one) or `extend` a running or paused one by `minutes`; `pause` a running
/// one, keeping what is left, or `resume` a paused one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimerAction {
    /// Starts a timebox of `minutes`.
    Start,
    /// Stops the clock, keeping the remaining time.
    Pause,
    /// Runs the clock again.
    Resume,
    /// Adds `minutes` (running or paused).
    Extend,
}

/// The timebox as stored: while running, the end time (server clock); while paused, what is
/// left. Every tab computes the same remaining time from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(
    description = "The timebox as the server keeps it (`meeting.timer` of the discussion document): every client works out the same remaining time from it and `server_time`."
)]
#[serde(rename_all = "camelCase")]
pub struct Timer {
    /// `running`, `paused` or `stopped`.
    pub state: TimerState,
    /// While running: when it ends, milliseconds since the Unix epoch (server clock); null while
    /// paused.
    #[schema(required = true)]
    pub ends_at: Option<u64>,
    /// While paused: the milliseconds left; null while running.
    #[schema(required = true)]
    pub remaining_ms: Option<u64>,
    /// The timebox as set, extensions included, in milliseconds.
    pub duration_ms: u64,
}

/// Whether the clock runs (`stopped` only before the first start, which no action answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TimerState {
    /// Counting down.
    Running,
    /// Held.
    Paused,
    /// Never started.
    Stopped,
}

impl Timer {
    fn stopped() -> Timer {
        Timer {
            state: TimerState::Stopped,
            ends_at: None,
            remaining_ms: None,
            duration_ms: 0,
        }
    }

    /// Applies an action at server time `now`.
    pub fn apply(
        self,
        action: TimerAction,
        minutes: Option<u64>,
        now: u64,
    ) -> Result<Timer, Problem> {
        let ms = |m: Option<u64>| -> Result<u64, Problem> {
            match m {
                Some(m) if (1..=MAX_TIMER_MINUTES).contains(&m) => Ok(m * 60_000),
                _ => Err(Problem::new(
                    ProblemKind::BadInput,
                    "invalid_minutes",
                    format!("minutes is a whole number from 1 to {MAX_TIMER_MINUTES}"),
                )),
            }
        };
        let wrong = |what: &str| {
            Problem::new(
                ProblemKind::Conflict,
                "invalid_timer_action",
                format!("the timer cannot {what}"),
            )
        };
        Ok(match (action, self.state) {
            (TimerAction::Start, _) => {
                let d = ms(minutes)?;
                Timer {
                    state: TimerState::Running,
                    ends_at: Some(now + d),
                    remaining_ms: None,
                    duration_ms: d,
                }
            }
            (TimerAction::Pause, TimerState::Running) => Timer {
                state: TimerState::Paused,
                ends_at: None,
                remaining_ms: Some(self.ends_at.unwrap_or(now).saturating_sub(now)),
                ..self
            },
            (TimerAction::Resume, TimerState::Paused) => Timer {
                state: TimerState::Running,
                ends_at: Some(now + self.remaining_ms.unwrap_or(0)),
                remaining_ms: None,
                ..self
            },
            (TimerAction::Extend, TimerState::Running) => {
                let d = ms(minutes)?;
                Timer {
                    ends_at: Some(self.ends_at.unwrap_or(now).max(now) + d),
                    duration_ms: self.duration_ms + d,
                    ..self
                }
            }
            (TimerAction::Extend, TimerState::Paused) => {
                let d = ms(minutes)?;
                Timer {
                    remaining_ms: Some(self.remaining_ms.unwrap_or(0) + d),
                    duration_ms: self.duration_ms + d,
                    ..self
                }
            }
            (TimerAction::Pause, _) => return Err(wrong("pause: it is not running")),
            (TimerAction::Resume, _) => return Err(wrong("resume: it is not paused")),
            (TimerAction::Extend, _) => return Err(wrong("be extended before it starts")),
        })
    }
}

fn read_timer<T: yrs::ReadTxn>(txn: &T, meeting: &MapRef) -> Timer {
    match meeting.get(txn, "timer") {
        Some(Out::Any(any)) => serde_json::to_value(&any)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_else(Timer::stopped),
        _ => Timer::stopped(),
    }
}

fn to_any<T: Serialize>(value: &T) -> Any {
    serde_json::to_value(value)
        .ok()
        .and_then(|v| serde_json::from_value(v).ok())
        .unwrap_or(Any::Null)
}

/// Applies a timer action; returns the new timer.
pub fn timer(doc: &Doc, action: TimerAction, minutes: Option<u64>) -> Outcome<Timer> {
    let meeting = doc.get_or_insert_map(MEETING);
    let mut txn = doc.transact_mut();
    let next = match read_timer(&txn, &meeting).apply(action, minutes, now_ms()) {
        Ok(t) => t,
        Err(p) => return (Err(p), None),
    };
    meeting.insert(&mut txn, "timer", to_any(&next));
    (Ok(next), Some(txn.encode_update_v1()))
}

/// Sets where the meeting is on its agenda.
pub fn agenda(doc: &Doc, item: &str) -> Outcome<()> {
    let meeting = doc.get_or_insert_map(MEETING);
    let mut txn = doc.transact_mut();
    meeting.insert(&mut txn, "agenda", item);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// Publishes how many people have marked the report read.
pub fn read_count(doc: &Doc, count: u64) -> Outcome<()> {
    let meeting = doc.get_or_insert_map(MEETING);
    let mut txn = doc.transact_mut();
    // Two marks racing may arrive out of order: the count never goes back.
    let shown = match meeting.get(&txn, "readCount") {
        Some(Out::Any(Any::Number(yrs::any::Number::Float(n)))) => n,
        Some(Out::Any(Any::Number(yrs::any::Number::Int(n)))) => n as f64,
        _ => 0.0,
    };
    if shown >= count as f64 {
        return (Ok(()), None);
    }
    meeting.insert(&mut txn, "readCount", count as f64);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// Publishes how many people have joined the review (the denominator of the read count).
pub fn people(doc: &Doc, count: usize) -> Outcome<()> {
    let meeting = doc.get_or_insert_map(MEETING);
    let mut txn = doc.transact_mut();
    meeting.insert(&mut txn, "people", count as f64);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// Turns the blameless-language hints on or off for everyone.
pub fn hints(doc: &Doc, on: bool) -> Outcome<()> {
    let review = doc.get_or_insert_map(REVIEW);
    let mut txn = doc.transact_mut();
    review.insert(&mut txn, "hints", on);
    (Ok(()), Some(txn.encode_update_v1()))
}

/// What an action item addresses: `prevent` stops it from happening again, `detect` finds it
/// sooner, `mitigate` makes it hurt less, `process` changes how people work together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    /// Stops it from happening again.
    Prevent,
    /// Finds it sooner.
    Detect,
    /// Makes it hurt less.
    Mitigate,
    /// Changes how people work together.
    Process,
}

/// Where an action item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ActionStatus {
    /// Not started.
    #[default]
    Open,
    /// Someone is on it.
    InProgress,
    /// Finished.
    Done,
}

/// An action item as submitted (validated by [`ActionInput::validate`]).
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(
    description = "An action item's fields, all of them (also to change one). Text fields are trimmed, then checked in the order what, why, owner, link, due; the first problem is the answer."
)]
pub struct ActionInput {
    /// What will change: 1 to 300 characters once trimmed.
    #[schema(min_length = 1, max_length = 300)]
    pub what: String,
    /// The contributing factor it addresses: 1 to 500 characters once trimmed.
    #[schema(min_length = 1, max_length = 500)]
    pub why: String,
    /// Prevent, detect, mitigate or process.
    pub kind: ActionKind,
    /// The owning team: 1 to 100 characters once trimmed.
    #[schema(min_length = 1, max_length = 100)]
    pub owner: String,
    /// Tracker link: once trimmed, an `http://` or `https://` URL with a host name (or IP address)
    /// and no user name or password, of at most 2,000 bytes, without whitespace or control
    /// characters; or an issue key that one of the server's tracker patterns matches whole
    /// (`PROJ-123`), stored as that pattern's link. Absent, null, empty or only whitespace: none.
    #[serde(default)]
    #[schema(max_length = 2000, pattern = r"^[^\s\u0000-\u001F\u007F-\u009F]*$")]
    pub link: Option<String>,
    /// Due day: once trimmed, a calendar day written YYYY-MM-DD. Absent, null, empty or only
    /// whitespace: none.
    #[serde(default)]
    #[schema(pattern = r"^([0-9]{4}-[0-9]{2}-[0-9]{2})?$")]
    pub due: Option<String>,
    /// Status (default open).
    #[serde(default)]
    pub status: ActionStatus,
}

impl ActionInput {
    /// Checks every field; the first problem is returned. A link that is no web link but an issue
    /// key one of `trackers`' patterns matches becomes that pattern's link.
    pub fn validate(mut self, trackers: &Trackers) -> Result<ActionInput, Problem> {
        let text =
            |v: &str, max: usize, code: &'static str, what: &str| -> Result<String, Problem> {
                let v = v.trim();
                if v.is_empty() || v.chars().count() > max {
                    return Err(Problem::new(
                        ProblemKind::BadInput,
                        code,
                        format!("{what} is 1 to {max} characters"),
                    ));
                }
                Ok(v.to_owned())
            };
        self.what = text(&self.what, 300, "invalid_what", "what the action changes")?;
        self.why = text(
            &self.why,
            500,
            "invalid_why",
            "the contributing factor it addresses",
        )?;
        self.owner = text(&self.owner, 100, "invalid_owner", "the owning team")?;
        if let Some(link) = self.link.take().filter(|l| !l.trim().is_empty()) {
            let link = link.trim().to_owned();
            let link = if link_host(&link).is_some() {
                link
            } else if let Some(expanded) = trackers.expand(&link).filter(|l| link_host(l).is_some())
            {
                expanded
            } else {
                return Err(Problem::new(
                    ProblemKind::BadInput,
                    "invalid_link",
                    if trackers.is_empty() {
                        "the tracking link is an http or https URL with a host name"
                    } else {
                        "the tracking link is an http or https URL with a host name, or an issue \
                         key that the server's tracker patterns know"
                    },
                ));
            };
            self.link = Some(link);
        }
        if let Some(due) = self.due.take().filter(|d| !d.trim().is_empty()) {
            self.due = Some(validate_date(due.trim()).map_err(|_| {
                Problem::new(
                    ProblemKind::BadInput,
                    "invalid_due",
                    "the due date is a calendar day written YYYY-MM-DD",
                )
            })?);
        }
        Ok(self)
    }
}

fn write_action(txn: &mut yrs::TransactionMut, map: &MapRef, a: &ActionInput, now: f64) {
    map.insert(txn, "what", a.what.as_str());
    map.insert(txn, "why", a.why.as_str());
    map.insert(txn, "kind", to_any(&a.kind));
    map.insert(txn, "owner", a.owner.as_str());
    map.insert(txn, "link", a.link.as_deref().map_or(Any::Null, Any::from));
    map.insert(txn, "due", a.due.as_deref().map_or(Any::Null, Any::from));
    map.insert(txn, "status", to_any(&a.status));
    map.insert(txn, "updatedAt", now);
}

/// One entry of an action item's history: who set which status, when.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatusChange {
    /// The status set (the first entry: the status the item was added with).
    pub status: ActionStatus,
    /// The display name of the session that set it.
    #[schema(min_length = 1, max_length = 60)]
    pub by: String,
    /// When, milliseconds since the Unix epoch (server clock).
    pub at: f64,
}

fn read_history<T: yrs::ReadTxn>(txn: &T, map: &MapRef) -> Vec<StatusChange> {
    match map.get(txn, "history") {
        Some(Out::Any(any)) => serde_json::to_value(&any)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

/// Appends to an item's history, keeping its first entry and the latest ones.
/// Puts `status`, set by `by` at `at`, at the end of the item's history (bounded), and returns
/// the item as JSON with the transaction's update.
fn record_status(
    mut txn: yrs::TransactionMut,
    map: &MapRef,
    status: ActionStatus,
    by: &str,
    at: f64,
) -> Outcome<serde_json::Value> {
    let mut history = read_history(&txn, map);
    history.push(StatusChange {
        status,
        by: by.to_owned(),
        at,
    });
    if history.len() > MAX_HISTORY {
        history.drain(1..history.len() + 1 - MAX_HISTORY);
    }
    map.insert(&mut txn, "history", to_any(&history));
    written(txn, map)
}

/// The item as JSON with the transaction's update.
fn written(txn: yrs::TransactionMut, map: &MapRef) -> Outcome<serde_json::Value> {
    let view = yrs::types::ToJson::to_json(map, &txn);
    (Ok(any_json(view)), Some(txn.encode_update_v1()))
}

fn read_status<T: yrs::ReadTxn>(txn: &T, map: &MapRef) -> Option<ActionStatus> {
    match map.get(txn, "status") {
        Some(Out::Any(any)) => serde_json::to_value(&any)
            .ok()
            .and_then(|v| serde_json::from_value(v).ok()),
        _ => None,
    }
}

/// Every action item of the discussion, as JSON (for the action index).
pub fn actions_json(doc: &Doc) -> Vec<serde_json::Value> {
    let txn = doc.transact();
    let Some(actions) = yrs::ReadTxn::get_map(&txn, ACTIONS) else {
        return Vec::new();
    };
    actions
        .iter(&txn)
        .filter_map(|(_, v)| v.cast::<MapRef>().ok())
        .map(|m| any_json(yrs::types::ToJson::to_json(&m, &txn)))
        .collect()
}

/// Adds an action item by `by` (a display name); returns it.
pub fn add_action(doc: &Doc, a: &ActionInput, by: &str) -> Outcome<serde_json::Value> {
    let actions = doc.get_or_insert_map(ACTIONS);
    let mut txn = doc.transact_mut();
    if actions.len(&txn) >= MAX_ACTIONS {
        return (
            Err(Problem::new(
                ProblemKind::Conflict,
                "too_many_actions",
                format!("a review holds at most {MAX_ACTIONS} action items"),
            )),
            None,
        );
    }
    let id = random_hex(8);
    let now = now_ms() as f64;
    let map = actions.insert(&mut txn, id.as_str(), MapPrelim::default());
    map.insert(&mut txn, "id", id.as_str());
    map.insert(&mut txn, "createdAt", now);
    write_action(&mut txn, &map, a, now);
    record_status(txn, &map, a.status, by, now)
}

fn unknown_action() -> Problem {
    Problem::new(
        ProblemKind::NotFound,
        "unknown_action",
        "this review has no such action item",
    )
}

/// An action item as it stands, if the review has it.
pub fn action(doc: &Doc, id: &str) -> Option<serde_json::Value> {
    let actions = doc.get_or_insert_map(ACTIONS);
    let txn = doc.transact();
    let map = actions.get(&txn, id)?.cast::<MapRef>().ok()?;
    Some(any_json(yrs::types::ToJson::to_json(&map, &txn)))
}

/// Replaces an action item's fields; a new status goes into its history, by `by`.
pub fn update_action(doc: &Doc, id: &str, a: &ActionInput, by: &str) -> Outcome<serde_json::Value> {
    let actions = doc.get_or_insert_map(ACTIONS);
    let mut txn = doc.transact_mut();
    let Some(map) = actions.get(&txn, id).and_then(|m| m.cast::<MapRef>().ok()) else {
        return (Err(unknown_action()), None);
    };
    let now = now_ms() as f64;
    let before = read_status(&txn, &map);
    write_action(&mut txn, &map, a, now);
    if before == Some(a.status) {
        return written(txn, &map);
    }
    record_status(txn, &map, a.status, by, now)
}

/// Moves an action item to `status`, recorded in its history as set by `by`; the same status
/// again changes nothing.
pub fn set_status(
    doc: &Doc,
    id: &str,
    status: ActionStatus,
    by: &str,
) -> Outcome<serde_json::Value> {
    let actions = doc.get_or_insert_map(ACTIONS);
    let mut txn = doc.transact_mut();
    let Some(map) = actions.get(&txn, id).and_then(|m| m.cast::<MapRef>().ok()) else {
        return (Err(unknown_action()), None);
    };
    if read_status(&txn, &map) == Some(status) {
        let view = yrs::types::ToJson::to_json(&map, &txn);
        return (Ok(any_json(view)), None);
    }
    let now = now_ms() as f64;
    map.insert(&mut txn, "status", to_any(&status));
    map.insert(&mut txn, "updatedAt", now);
    record_status(txn, &map, status, by, now)
}

fn any_json(any: Any) -> serde_json::Value {
    serde_json::to_value(any).unwrap_or(serde_json::Value::Null)
}

/// The whole discussion as JSON (for exports): review, threads, concerns, actions, meeting.
pub fn snapshot(doc: &Doc) -> HashMap<String, serde_json::Value> {
    let txn = doc.transact();
    let mut out = HashMap::new();
    for root in [
        REVIEW,
        super::threads::CONCERNS,
        ACTIONS,
        MEETING,
        "threads",
    ] {
        let value = yrs::ReadTxn::get_map(&txn, root)
            .map(|m| any_json(yrs::types::ToJson::to_json(&m, &txn)))
            .unwrap_or(serde_json::Value::Null);
        out.insert(root.to_owned(), value);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_timer_pauses_resumes_and_extends_on_the_server_clock() {
        let t = Timer::stopped();
        assert!(t.apply(TimerAction::Pause, None, 0).is_err());
        let t = t.apply(TimerAction::Start, Some(30), 1_000).expect("start");
        assert_eq!(t.ends_at, Some(1_000 + 30 * 60_000));
        let t = t.apply(TimerAction::Pause, None, 61_000).expect("pause");
        assert_eq!(t.remaining_ms, Some(29 * 60_000));
        // Time passing while paused changes nothing.
        let t = t
            .apply(TimerAction::Extend, Some(5), 10_000_000)
            .expect("extend paused");
        assert_eq!(t.remaining_ms, Some(34 * 60_000));
        let t = t
            .apply(TimerAction::Resume, None, 20_000_000)
            .expect("resume");
        assert_eq!(t.ends_at, Some(20_000_000 + 34 * 60_000));
        assert_eq!(t.duration_ms, 35 * 60_000);
        assert_eq!(
            t.apply(TimerAction::Start, Some(0), 0).map_err(|p| p.code),
            Err("invalid_minutes")
        );
    }

    #[test]
    fn action_items_are_validated() {
        let base = ActionInput {
            what: "Alert on queue depth".into(),
            why: "Backlog grew unnoticed for an hour".into(),
            kind: ActionKind::Detect,
            owner: "Payments SRE".into(),
            link: Some("https://tracker.example/PAY-1".into()),
            due: Some("2026-12-31".into()),
            status: ActionStatus::Open,
        };
        let none = Trackers::default();
        assert!(base.clone().validate(&none).is_ok());
        let bad = |f: fn(&mut ActionInput)| {
            let mut a = base.clone();
            f(&mut a);
            a.validate(&none).map(|_| ()).map_err(|p| p.code)
        };
        assert_eq!(bad(|a| a.what = " ".into()), Err("invalid_what"));
        assert_eq!(
            bad(|a| a.link = Some("javascript:alert(1)".into())),
            Err("invalid_link")
        );
        assert_eq!(bad(|a| a.due = Some("soon".into())), Err("invalid_due"));
        assert_eq!(bad(|a| a.owner = "x".repeat(101)), Err("invalid_owner"));
        assert_eq!(
            bad(|a| a.link = Some("https://user:secret@tracker.example/1".into())),
            Err("invalid_link")
        );
        assert_eq!(
            bad(|a| a.link = Some("PROJ-12".into())),
            Err("invalid_link")
        );
        let trackers = Trackers::parse(&["PROJ-[0-9]+=https://tracker.example/browse/{}"])
            .expect("a valid pattern");
        let keyed = ActionInput {
            link: Some(" PROJ-12 ".into()),
            ..base.clone()
        }
        .validate(&trackers)
        .expect("a key the patterns know");
        assert_eq!(
            keyed.link.as_deref(),
            Some("https://tracker.example/browse/PROJ-12")
        );
    }

    #[test]
    fn status_changes_are_recorded_with_who_and_when() {
        let doc = crate::documents::crdt::new_doc();
        let input = ActionInput {
            what: "Alert on queue depth".into(),
            why: "Backlog grew unnoticed".into(),
            kind: ActionKind::Detect,
            owner: "SRE".into(),
            link: None,
            due: None,
            status: ActionStatus::Open,
        };
        let item = add_action(&doc, &input, "Ann").0.expect("added");
        let id = item["id"].as_str().expect("an id").to_owned();
        let moved = set_status(&doc, &id, ActionStatus::InProgress, "Bo");
        assert!(moved.1.is_some());
        // The same status again writes nothing.
        let again = set_status(&doc, &id, ActionStatus::InProgress, "Cy");
        assert!(again.1.is_none());
        let edited = update_action(
            &doc,
            &id,
            &ActionInput {
                status: ActionStatus::Done,
                ..input
            },
            "Di",
        )
        .0
        .expect("updated");
        let history: Vec<StatusChange> =
            serde_json::from_value(edited["history"].clone()).expect("a history");
        let who: Vec<(ActionStatus, &str)> =
            history.iter().map(|c| (c.status, c.by.as_str())).collect();
        assert_eq!(
            who,
            vec![
                (ActionStatus::Open, "Ann"),
                (ActionStatus::InProgress, "Bo"),
                (ActionStatus::Done, "Di"),
            ]
        );
        for _ in 0..30 {
            for status in [ActionStatus::Open, ActionStatus::Done] {
                set_status(&doc, &id, status, "Ed").0.expect("moved");
            }
        }
        let all = actions_json(&doc);
        let history: Vec<StatusChange> =
            serde_json::from_value(all[0]["history"].clone()).expect("a history");
        assert_eq!(history.len(), MAX_HISTORY);
        assert_eq!(history[0].by, "Ann");
    }
}
