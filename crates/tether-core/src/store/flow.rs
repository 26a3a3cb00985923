//! The store's decisions as sans-IO state machines: what to do, in which order, and what follows
//! from each answer, written once for every backend. A flow yields [`Op`]s, one storage operation
//! each; the backend runs an op with its own SQL inside its own transaction and feeds the
//! [`Answer`] back. No flow touches a database, so each is tested here as a table of op sequences.
//!
//! This module owns the vocabulary (ops, answers, steps), a driver that runs a flow against a
//! blocking executor ([`run_sync`]; an async backend writes the same five-line loop around its
//! awaits), and the revocation
//! cascades ([`Cascade`]): revoking an access token revokes the refresh families issued with it,
//! revoking a family revokes the access tokens issued with its members, revoking a grant revokes
//! every token descending from it. Issuance is [`super::issue_flow::IssueFlow`].

use std::collections::VecDeque;

use crate::error::StoreError;

use super::{AccessTokenRecord, RefreshTokenRecord, StoreResult};

/// One storage operation a flow asks for. Every op happens at the flow's `now` (the executor is
/// given it) and inside the flow's transaction. The comment of each variant says what it does and
/// which [`Answer`] it gives.
#[derive(Debug, Clone)]
pub enum Op<'a> {
    /// Mark the code (by hash) used if it is unused. [`Answer::Changed`]: whether it was unused.
    ConsumeCode(&'a str),
    /// The `grant_id` of the code (by hash). [`Answer::Id`] (`None`: no such code).
    GrantOfCode(&'a str),
    /// Mark the refresh token (by token hash) used if it is neither used nor revoked.
    /// [`Answer::Changed`]: whether it was active.
    RotateRefresh(&'a str),
    /// Link the refresh token (by token hash) to the new access token `access_id` if it is
    /// neither used nor revoked, leaving it unused (a refresh token that is not rotated: FAPI 2.0
    /// §5.3.2.1). [`Answer::Changed`]: whether it was active.
    KeepRefresh { hash: &'a str, access_id: &'a str },
    /// The `family_id` of the refresh token (by token hash). [`Answer::Id`].
    FamilyOfRefresh(&'a str),
    /// Move the device authorization (by device hash) from `approved` to `used`.
    /// [`Answer::Changed`]: whether it was approved.
    ConsumeDevice(&'a str),
    /// Serialise issuance for this reuse key until the transaction ends (a backend whose writes are
    /// already serialised does nothing). [`Answer::Ran`].
    LockReuseKey(&'a str),
    /// Mark the unrevoked access tokens of the reuse key that have expired (`expires_at <= now`)
    /// revoked at their expiry, so they no longer count as its active token. [`Answer::Ran`].
    ExpireStale(&'a str),
    /// The unrevoked access token of the reuse key (at most one, by the store's unique index).
    /// [`Answer::Token`].
    FindActive(&'a str),
    /// Revoke one access token (by token hash) if unrevoked. [`Answer::Ran`].
    RevokeAccess(String),
    /// The distinct `family_id`s of the refresh tokens issued with an access token (by its token
    /// hash, their `access_id`). [`Answer::Ids`].
    FamiliesOfAccess(String),
    /// Revoke the unrevoked access tokens issued with any member of the refresh family.
    /// [`Answer::Ran`].
    RevokeFamilyAccess(String),
    /// Revoke the unrevoked refresh tokens of the family. [`Answer::Ran`].
    RevokeFamilyRefresh(String),
    /// Revoke the unrevoked access tokens of the grant (`grant_id`). [`Answer::Ran`].
    RevokeGrantAccess(String),
    /// Revoke the unrevoked refresh tokens of the grant. [`Answer::Ran`].
    RevokeGrantRefresh(String),
    /// Insert the access token (unrevoked). [`Answer::Ran`].
    InsertAccess(&'a AccessTokenRecord),
    /// Insert the refresh token (unused, unrevoked) paired with the access token whose token hash
    /// is `access_id` (which may differ from `refresh.access_id` when an active token is reused).
    /// [`Answer::Ran`].
    InsertRefresh { refresh: &'a RefreshTokenRecord, access_id: String },
}

/// What an executor reports after running an [`Op`].
#[derive(Debug, Clone)]
pub enum Answer {
    /// The op ran; it has nothing to report.
    Ran,
    /// Whether a conditional update changed a row.
    Changed(bool),
    /// The id looked up, if the row exists.
    Id(Option<String>),
    /// The ids looked up.
    Ids(Vec<String>),
    /// The active access token of a reuse key, if any.
    Token(Option<Box<AccessTokenRecord>>),
}

/// What a flow wants next.
#[derive(Debug)]
pub enum Step<'a, T> {
    /// Run this op and [`Flow::resume`] with its answer.
    Run(Op<'a>),
    /// The flow is over; its result.
    Done(T),
}

/// A sans-IO decision flow: [`Flow::start`], then run each op and [`Flow::resume`] with its answer
/// until [`Step::Done`] ([`run_sync`] does exactly that).
pub trait Flow<'a> {
    type Output;
    /// The first step.
    fn start(&mut self) -> Step<'a, Self::Output>;
    /// The answer to the op of the last step; the next step. An answer of the wrong kind is a bug
    /// in the executor and an error.
    fn resume(&mut self, answer: Answer) -> StoreResult<Step<'a, Self::Output>>;
}

/// Run a flow to its end with a blocking executor.
pub fn run_sync<'a, F: Flow<'a>>(
    mut flow: F,
    mut exec: impl FnMut(Op<'a>) -> StoreResult<Answer>,
) -> StoreResult<F::Output> {
    let mut step = flow.start();
    loop {
        match step {
            Step::Done(out) => return Ok(out),
            Step::Run(op) => step = flow.resume(exec(op)?)?,
        }
    }
}

/// An answer the flow did not ask for: a bug in the executor.
pub(super) fn unexpected(flow: &str, answer: &Answer) -> StoreError {
    StoreError::Other(format!("{flow}: the store gave an unexpected answer {answer:?}"))
}

/// A revocation cascade: the ops to run, in order, growing when a lookup names more to revoke.
#[derive(Debug, Clone)]
pub struct Cascade<'a> {
    queue: VecDeque<Op<'a>>,
}

impl<'a> Cascade<'a> {
    /// Revoke an access token (by token hash) and, `with_families`, every refresh family issued
    /// with it together with those families' access tokens.
    pub fn access(token_hash: impl Into<String>, with_families: bool) -> Self {
        let hash = token_hash.into();
        let mut queue = VecDeque::from([Op::RevokeAccess(hash.clone())]);
        if with_families {
            queue.push_back(Op::FamiliesOfAccess(hash));
        }
        Self { queue }
    }

    /// Revoke a refresh family and every access token issued with its members (reuse detection).
    pub fn family(family_id: impl Into<String>) -> Self {
        let mut c = Self { queue: VecDeque::new() };
        c.push_family(family_id.into());
        c
    }

    /// Revoke every access and refresh token descending from one authorization (a replayed code).
    pub fn grant(grant_id: impl Into<String>) -> Self {
        let id = grant_id.into();
        Self { queue: VecDeque::from([Op::RevokeGrantAccess(id.clone()), Op::RevokeGrantRefresh(id)]) }
    }

    fn push_family(&mut self, id: String) {
        self.queue.push_back(Op::RevokeFamilyAccess(id.clone()));
        self.queue.push_back(Op::RevokeFamilyRefresh(id));
    }

    fn next(&mut self) -> Step<'a, ()> {
        match self.queue.pop_front() {
            Some(op) => Step::Run(op),
            None => Step::Done(()),
        }
    }
}

impl<'a> Flow<'a> for Cascade<'a> {
    type Output = ();

    fn start(&mut self) -> Step<'a, ()> {
        self.next()
    }

    fn resume(&mut self, answer: Answer) -> StoreResult<Step<'a, ()>> {
        match answer {
            Answer::Ran => {}
            Answer::Ids(families) => families.into_iter().for_each(|f| self.push_family(f)),
            other => return Err(unexpected("revocation", &other)),
        }
        Ok(self.next())
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// An op written as text, for tables of expected sequences.
    pub fn show(op: &Op<'_>) -> String {
        match op {
            Op::ConsumeCode(h) => format!("ConsumeCode({h})"),
            Op::GrantOfCode(h) => format!("GrantOfCode({h})"),
            Op::RotateRefresh(h) => format!("RotateRefresh({h})"),
            Op::KeepRefresh { hash, access_id } => format!("KeepRefresh({hash}, {access_id})"),
            Op::FamilyOfRefresh(h) => format!("FamilyOfRefresh({h})"),
            Op::ConsumeDevice(h) => format!("ConsumeDevice({h})"),
            Op::LockReuseKey(k) => format!("LockReuseKey({k})"),
            Op::ExpireStale(k) => format!("ExpireStale({k})"),
            Op::FindActive(k) => format!("FindActive({k})"),
            Op::RevokeAccess(h) => format!("RevokeAccess({h})"),
            Op::FamiliesOfAccess(h) => format!("FamiliesOfAccess({h})"),
            Op::RevokeFamilyAccess(f) => format!("RevokeFamilyAccess({f})"),
            Op::RevokeFamilyRefresh(f) => format!("RevokeFamilyRefresh({f})"),
            Op::RevokeGrantAccess(g) => format!("RevokeGrantAccess({g})"),
            Op::RevokeGrantRefresh(g) => format!("RevokeGrantRefresh({g})"),
            Op::InsertAccess(a) => format!("InsertAccess({})", a.token_hash),
            Op::InsertRefresh { refresh, access_id } => format!("InsertRefresh({}, {access_id})", refresh.token_hash),
        }
    }

    /// Run a flow against a script: each op it yields is recorded and answered by `answer`.
    pub fn script<'a, F: Flow<'a>>(
        flow: F,
        mut answer: impl FnMut(&Op<'a>) -> Answer,
    ) -> (StoreResult<F::Output>, Vec<String>) {
        let mut seen = Vec::new();
        let out = run_sync(flow, |op| {
            seen.push(show(&op));
            Ok(answer(&op))
        });
        (out, seen)
    }

    fn families(fams: &'static [&'static str]) -> impl FnMut(&Op<'_>) -> Answer {
        move |op| match op {
            Op::FamiliesOfAccess(_) => Answer::Ids(fams.iter().map(|s| s.to_string()).collect()),
            _ => Answer::Ran,
        }
    }

    #[test]
    fn cascades() {
        let table: &[(Cascade<'_>, &'static [&'static str], &[&str])] = &[
            (Cascade::access("A", false), &["F1"], &["RevokeAccess(A)"]),
            (Cascade::access("A", true), &[], &["RevokeAccess(A)", "FamiliesOfAccess(A)"]),
            (
                Cascade::access("A", true),
                &["F1", "F2"],
                &[
                    "RevokeAccess(A)",
                    "FamiliesOfAccess(A)",
                    "RevokeFamilyAccess(F1)",
                    "RevokeFamilyRefresh(F1)",
                    "RevokeFamilyAccess(F2)",
                    "RevokeFamilyRefresh(F2)",
                ],
            ),
            (Cascade::family("F"), &[], &["RevokeFamilyAccess(F)", "RevokeFamilyRefresh(F)"]),
            (Cascade::grant("G"), &[], &["RevokeGrantAccess(G)", "RevokeGrantRefresh(G)"]),
        ];
        for (cascade, fams, want) in table {
            let (out, seen) = script(cascade.clone(), families(fams));
            assert!(out.is_ok());
            assert_eq!(seen, *want);
        }
    }

    #[test]
    fn a_wrong_answer_is_an_error() {
        let (out, _) = script(Cascade::grant("G"), |_| Answer::Changed(true));
        assert!(matches!(out, Err(StoreError::Other(_))));
    }
}
