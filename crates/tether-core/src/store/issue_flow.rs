//! Issuance ([`super::Store::issue`]) as one sans-IO flow, the same for every backend: the
//! precondition (consume a code, rotate a refresh token, consume a device authorization, revoking
//! the grant or the family on a replay), then the "one active token per reuse key" policy of
//! token-binding.md B-3, then the inserts. The backend runs the [`Op`]s in one transaction.
//!
//! The order of ops, in full:
//!
//! 1. Precondition. `ConsumeCode` / `RotateRefresh` / `KeepRefresh` / `ConsumeDevice`. If it did
//!    not change a row:
//!    a code looks up its grant and revokes it ([`Cascade::grant`], RFC 6749 §4.1.2), a refresh
//!    token looks up its family and revokes it ([`Cascade::family`], reuse detection), a device
//!    authorization revokes nothing (a concurrent poll got the tokens), nor does a kept refresh
//!    token (revoked meanwhile); the outcome is
//!    [`IssueOutcome::Replayed`] and nothing is inserted.
//! 2. Reuse key (when the new access token has one): `LockReuseKey`, `ExpireStale` (an expired
//!    token is not the key's active token), `FindActive`. With an active token:
//!    [`ReusePolicy::ReuseActive`] inserts only the new refresh token, linked to the active access
//!    token, and returns [`IssueOutcome::Reused`]; [`ReusePolicy::RevokePrevious`] revokes it
//!    ([`Cascade::access`], with its refresh families when `with_refresh`);
//!    [`ReusePolicy::Independent`] leaves it.
//! 3. `InsertAccess`, then `InsertRefresh` linked to it: [`IssueOutcome::Issued`].

use super::flow::{Answer, Cascade, Flow, Op, Step, unexpected};
use super::{AccessTokenRecord, IssueOutcome, IssueRequest, Precondition, ReusePolicy, StoreResult};

/// The decision flow of one [`IssueRequest`].
#[derive(Debug)]
pub struct IssueFlow<'a> {
    req: &'a IssueRequest,
    state: State<'a>,
}

/// Where the flow is: which answer it waits for.
#[derive(Debug)]
enum State<'a> {
    Start,
    /// The precondition's op ran ([`Answer::Changed`]).
    Precondition,
    /// The replayed code's grant or refresh token's family was looked up ([`Answer::Id`]).
    ReplayLookup,
    /// A revocation is under way; `after` says what follows it.
    Revoking(Cascade<'a>, After),
    Locked(&'a str),
    ExpiredStale(&'a str),
    FoundActive,
    /// The new refresh token was linked to the reused access token.
    Linked(Box<AccessTokenRecord>),
    InsertedAccess,
    InsertedRefresh,
    Finished,
}

#[derive(Debug, Clone, Copy)]
enum After {
    /// The precondition failed: report the replay.
    Replayed,
    /// The previous token is revoked: issue the new one.
    Insert,
}

impl<'a> IssueFlow<'a> {
    pub fn new(req: &'a IssueRequest) -> Self {
        Self { req, state: State::Start }
    }

    fn run(&mut self, state: State<'a>, op: Op<'a>) -> Step<'a, IssueOutcome> {
        self.state = state;
        Step::Run(op)
    }

    /// Step 2: the reuse key, if any.
    fn reuse(&mut self) -> Step<'a, IssueOutcome> {
        match self.req.access.reuse_key.as_deref() {
            Some(key) => self.run(State::Locked(key), Op::LockReuseKey(key)),
            None => self.insert(),
        }
    }

    /// Step 3: the new tokens.
    fn insert(&mut self) -> Step<'a, IssueOutcome> {
        self.run(State::InsertedAccess, Op::InsertAccess(&self.req.access))
    }

    /// Go on with a revocation cascade (`step` is its next step), then with `after`.
    fn revoking(&mut self, cascade: Cascade<'a>, after: After, step: Step<'a, ()>) -> Step<'a, IssueOutcome> {
        match step {
            Step::Run(op) => self.run(State::Revoking(cascade, after), op),
            Step::Done(()) => match after {
                After::Replayed => Step::Done(IssueOutcome::Replayed),
                After::Insert => self.insert(),
            },
        }
    }

    fn revoke(&mut self, mut cascade: Cascade<'a>, after: After) -> Step<'a, IssueOutcome> {
        let step = cascade.start();
        self.revoking(cascade, after, step)
    }
}

impl<'a> Flow<'a> for IssueFlow<'a> {
    type Output = IssueOutcome;

    fn start(&mut self) -> Step<'a, IssueOutcome> {
        let op = match &self.req.precondition {
            Precondition::None => return self.reuse(),
            Precondition::ConsumeCode(hash) => Op::ConsumeCode(hash),
            Precondition::RotateRefresh(hash) => Op::RotateRefresh(hash),
            Precondition::KeepRefresh(hash) => Op::KeepRefresh { hash, access_id: &self.req.access.token_hash },
            Precondition::ConsumeDevice(hash) => Op::ConsumeDevice(hash),
        };
        self.run(State::Precondition, op)
    }

    fn resume(&mut self, answer: Answer) -> StoreResult<Step<'a, IssueOutcome>> {
        let req = self.req;
        let state = std::mem::replace(&mut self.state, State::Finished);
        Ok(match (state, answer) {
            (State::Precondition, Answer::Changed(true)) => self.reuse(),
            (State::Precondition, Answer::Changed(false)) => match &req.precondition {
                Precondition::ConsumeCode(hash) => self.run(State::ReplayLookup, Op::GrantOfCode(hash)),
                Precondition::RotateRefresh(hash) => self.run(State::ReplayLookup, Op::FamilyOfRefresh(hash)),
                // A device authorization no longer approved: a concurrent poll got the tokens.
                // Nothing to revoke.
                Precondition::ConsumeDevice(_) => Step::Done(IssueOutcome::Replayed),
                // A kept refresh token revoked meanwhile: nothing to revoke either.
                Precondition::KeepRefresh(_) => Step::Done(IssueOutcome::Replayed),
                Precondition::None => return Err(unexpected("issuance", &Answer::Changed(false))),
            },
            (State::ReplayLookup, Answer::Id(None)) => Step::Done(IssueOutcome::Replayed),
            (State::ReplayLookup, Answer::Id(Some(id))) => {
                let cascade = match req.precondition {
                    Precondition::ConsumeCode(_) => Cascade::grant(id),
                    _ => Cascade::family(id),
                };
                self.revoke(cascade, After::Replayed)
            }
            (State::Revoking(mut cascade, after), answer) => {
                let step = cascade.resume(answer)?;
                self.revoking(cascade, after, step)
            }
            (State::Locked(key), Answer::Ran) => self.run(State::ExpiredStale(key), Op::ExpireStale(key)),
            (State::ExpiredStale(key), Answer::Ran) => self.run(State::FoundActive, Op::FindActive(key)),
            (State::FoundActive, Answer::Token(None)) => self.insert(),
            (State::FoundActive, Answer::Token(Some(active))) => match req.policy {
                ReusePolicy::ReuseActive => match &req.refresh {
                    Some(refresh) => {
                        let access_id = active.token_hash.clone();
                        self.run(State::Linked(active), Op::InsertRefresh { refresh, access_id })
                    }
                    None => Step::Done(IssueOutcome::Reused(active)),
                },
                ReusePolicy::RevokePrevious { with_refresh } => {
                    self.revoke(Cascade::access(active.token_hash, with_refresh), After::Insert)
                }
                ReusePolicy::Independent => self.insert(),
            },
            (State::Linked(active), Answer::Ran) => Step::Done(IssueOutcome::Reused(active)),
            (State::InsertedAccess, Answer::Ran) => match &req.refresh {
                Some(refresh) => {
                    let access_id = req.access.token_hash.clone();
                    self.run(State::InsertedRefresh, Op::InsertRefresh { refresh, access_id })
                }
                None => Step::Done(IssueOutcome::Issued),
            },
            (State::InsertedRefresh, Answer::Ran) => Step::Done(IssueOutcome::Issued),
            (_, answer) => return Err(unexpected("issuance", &answer)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::flow::tests::script;
    use super::*;
    use crate::model::TokenType;
    use crate::store::RefreshTokenRecord;

    fn access(hash: &str, reuse_key: Option<&str>) -> AccessTokenRecord {
        AccessTokenRecord {
            id: format!("id-{hash}"),
            token_hash: hash.into(),
            jti: format!("jti-{hash}"),
            client_id: "app".into(),
            user_id: Some("u".into()),
            username: Some("alice".into()),
            scope: "read".into(),
            audience: vec![],
            token_type: TokenType::Opaque,
            binding: None,
            reuse_key: reuse_key.map(Into::into),
            grant_id: None,
            session_id: None,
            auth_time: None,
            issued_at: 0,
            expires_at: 100,
            revoked_at: None,
            act: None,
        }
    }

    fn refresh(hash: &str, access_id: &str) -> RefreshTokenRecord {
        RefreshTokenRecord {
            id: format!("id-{hash}"),
            token_hash: hash.into(),
            family_id: "F".into(),
            access_id: access_id.into(),
            client_id: "app".into(),
            user_id: Some("u".into()),
            username: Some("alice".into()),
            scope: "read".into(),
            audience: vec![],
            binding: None,
            grant_id: None,
            session_id: None,
            auth_time: None,
            issued_at: 0,
            expires_at: 1000,
            used_at: None,
            revoked_at: None,
        }
    }

    /// How the scripted store answers.
    #[derive(Clone, Copy)]
    struct World {
        /// Does the precondition's conditional update change a row?
        fresh: bool,
        /// Does the replayed code / refresh token still exist (with a grant / family)?
        known: bool,
        /// Is there an active token of the reuse key (hash "OLD")?
        active: bool,
    }

    const FRESH: World = World { fresh: true, known: true, active: false };

    fn answer(w: World) -> impl FnMut(&Op<'_>) -> Answer {
        move |op| match op {
            Op::ConsumeCode(_) | Op::RotateRefresh(_) | Op::KeepRefresh { .. } | Op::ConsumeDevice(_) => {
                Answer::Changed(w.fresh)
            }
            Op::GrantOfCode(_) => Answer::Id(w.known.then(|| "G".into())),
            Op::FamilyOfRefresh(_) => Answer::Id(w.known.then(|| "F0".into())),
            Op::FindActive(key) => Answer::Token(w.active.then(|| Box::new(access("OLD", Some(key))))),
            Op::FamiliesOfAccess(_) => Answer::Ids(vec!["F1".into()]),
            _ => Answer::Ran,
        }
    }

    fn request(
        precondition: Precondition,
        policy: ReusePolicy,
        key: Option<&str>,
        with_refresh_token: bool,
    ) -> IssueRequest {
        IssueRequest {
            access: access("NEW", key),
            refresh: with_refresh_token.then(|| refresh("R", "NEW")),
            policy,
            precondition,
            now: 50,
        }
    }

    fn outcome(o: &IssueOutcome) -> String {
        match o {
            IssueOutcome::Issued => "Issued".into(),
            IssueOutcome::Reused(t) => format!("Reused({})", t.token_hash),
            IssueOutcome::Replayed => "Replayed".into(),
        }
    }

    const REUSE: ReusePolicy = ReusePolicy::ReuseActive;
    const REVOKE: ReusePolicy = ReusePolicy::RevokePrevious { with_refresh: false };
    const REVOKE_ALL: ReusePolicy = ReusePolicy::RevokePrevious { with_refresh: true };
    const INDEPENDENT: ReusePolicy = ReusePolicy::Independent;

    fn cat<'s>(parts: &[&[&'s str]]) -> Vec<&'s str> {
        parts.concat()
    }

    #[test]
    fn step_sequences() {
        use Precondition as P;
        let code = || P::ConsumeCode("C".into());
        let rt = || P::RotateRefresh("RT".into());
        let dev = || P::ConsumeDevice("D".into());
        let keep = || P::KeepRefresh("RT".into());
        let replayed = World { fresh: false, ..FRESH };
        let gone = World { fresh: false, known: false, active: false };
        let active = World { active: true, ..FRESH };
        let lookup = ["LockReuseKey(K)", "ExpireStale(K)", "FindActive(K)"];
        let insert = ["InsertAccess(NEW)", "InsertRefresh(R, NEW)"];
        #[rustfmt::skip]
        let table: Vec<(&str, IssueRequest, World, Vec<&str>, &str)> = vec![
            ("no precondition, no key", request(P::None, INDEPENDENT, None, true), FRESH,
                insert.to_vec(), "Issued"),
            ("no refresh token", request(P::None, INDEPENDENT, None, false), FRESH,
                vec!["InsertAccess(NEW)"], "Issued"),
            ("code redeemed", request(code(), INDEPENDENT, None, true), FRESH,
                cat(&[&["ConsumeCode(C)"], &insert]), "Issued"),
            ("code replayed: its grant is revoked", request(code(), REUSE, Some("K"), true), replayed,
                vec!["ConsumeCode(C)", "GrantOfCode(C)", "RevokeGrantAccess(G)", "RevokeGrantRefresh(G)"], "Replayed"),
            ("unknown code", request(code(), REUSE, Some("K"), true), gone,
                vec!["ConsumeCode(C)", "GrantOfCode(C)"], "Replayed"),
            ("refresh rotated", request(rt(), REVOKE_ALL, None, true), FRESH,
                cat(&[&["RotateRefresh(RT)"], &insert]), "Issued"),
            ("refresh reused: its family is revoked", request(rt(), REVOKE_ALL, Some("K"), true), replayed,
                vec!["RotateRefresh(RT)", "FamilyOfRefresh(RT)", "RevokeFamilyAccess(F0)", "RevokeFamilyRefresh(F0)"], "Replayed"),
            ("unknown refresh token", request(rt(), REVOKE_ALL, None, true), gone,
                vec!["RotateRefresh(RT)", "FamilyOfRefresh(RT)"], "Replayed"),
            ("refresh kept: relinked to the new access token", request(keep(), REVOKE, Some("K"), false), active,
                cat(&[&["KeepRefresh(RT, NEW)"], &lookup, &["RevokeAccess(OLD)", "InsertAccess(NEW)"]]), "Issued"),
            ("kept refresh token revoked meanwhile: nothing revoked", request(keep(), REVOKE, Some("K"), false), replayed,
                vec!["KeepRefresh(RT, NEW)"], "Replayed"),
            ("device consumed", request(dev(), REVOKE, None, true), FRESH,
                cat(&[&["ConsumeDevice(D)"], &insert]), "Issued"),
            ("device already used: nothing revoked", request(dev(), REVOKE, Some("K"), true), replayed,
                vec!["ConsumeDevice(D)"], "Replayed"),
            ("key without an active token", request(P::None, REUSE, Some("K"), true), FRESH,
                cat(&[&lookup, &insert]), "Issued"),
            ("reuse: refresh token linked to the active one", request(code(), REUSE, Some("K"), true), active,
                cat(&[&["ConsumeCode(C)"], &lookup, &["InsertRefresh(R, OLD)"]]), "Reused(OLD)"),
            ("reuse without a refresh token", request(P::None, REUSE, Some("K"), false), active,
                lookup.to_vec(), "Reused(OLD)"),
            ("revoke previous, access only", request(P::None, REVOKE, Some("K"), true), active,
                cat(&[&lookup, &["RevokeAccess(OLD)"], &insert]), "Issued"),
            ("revoke previous with its refresh families", request(rt(), REVOKE_ALL, Some("K"), true), active,
                cat(&[&["RotateRefresh(RT)"], &lookup,
                    &["RevokeAccess(OLD)", "FamiliesOfAccess(OLD)", "RevokeFamilyAccess(F1)", "RevokeFamilyRefresh(F1)"],
                    &insert]), "Issued"),
            ("independent leaves the active token", request(P::None, INDEPENDENT, Some("K"), true), active,
                cat(&[&lookup, &insert]), "Issued"),
        ];
        for (name, req, world, want, want_outcome) in table {
            let (out, seen) = script(IssueFlow::new(&req), answer(world));
            assert_eq!(seen, want, "{name}: ops");
            assert_eq!(outcome(&out.unwrap()), want_outcome, "{name}: outcome");
        }
    }

    #[test]
    fn a_wrong_answer_is_an_error() {
        let req = request(Precondition::ConsumeCode("C".into()), REUSE, None, true);
        let (out, seen) = script(IssueFlow::new(&req), |_| Answer::Ids(vec![]));
        assert!(out.is_err());
        assert_eq!(seen, ["ConsumeCode(C)"]);
    }
}
