//! The in-memory limits on guessing and flooding the review endpoints that need no session
//! (creating and joining): per client address and per invite link. Never stored or logged.

use crate::reviews::problem::Problem;
use crate::reviews::sessions::throttle;

/// Reviews one client address may create per minute (then it waits, twice as long each time
/// it floods again): far above what a person does, so one script cannot block others.
pub const CREATIONS_PER_ADDRESS: u32 = 10;
/// Wrong creation secrets one address may send per minute before it must wait.
pub const WRONG_SECRETS_PER_ADDRESS: u32 = 5;
/// Joins (right or wrong) one address may make per minute: a team joining from behind one NAT
/// fits; a script guessing invites does not.
pub const JOINS_PER_ADDRESS: u32 = 60;
/// Wrong invite tokens one address may send per minute before it must wait.
pub const WRONG_INVITES_PER_ADDRESS: u32 = 10;
/// Sessions one invite link may create per minute: a whole team joining at the start of a
/// meeting fits; a script filling the review with sessions does not.
pub const JOINS_PER_INVITE: u32 = 30;
/// Sign-ins begun from one address in a minute: a person needs a few; each holds a login in
/// progress on the server (bounded in all), so one address cannot push out everyone else's.
pub const SIGN_INS_PER_ADDRESS: u32 = 30;

/// The in-memory limits on guessing and flooding ([`throttle`]).
#[derive(Debug)]
pub struct Guards {
    creations: throttle::Throttle<std::net::IpAddr>,
    wrong_secrets: throttle::Throttle<std::net::IpAddr>,
    joins: throttle::Throttle<std::net::IpAddr>,
    wrong_invites: throttle::Throttle<std::net::IpAddr>,
    invites: throttle::Throttle<[u8; 32]>,
    sign_ins: throttle::Throttle<std::net::IpAddr>,
}

impl Default for Guards {
    fn default() -> Self {
        let minute = std::time::Duration::from_secs(60);
        Guards {
            creations: throttle::Throttle::new(CREATIONS_PER_ADDRESS, minute),
            wrong_secrets: throttle::Throttle::new(WRONG_SECRETS_PER_ADDRESS, minute),
            joins: throttle::Throttle::new(JOINS_PER_ADDRESS, minute),
            wrong_invites: throttle::Throttle::new(WRONG_INVITES_PER_ADDRESS, minute),
            invites: throttle::Throttle::new(JOINS_PER_INVITE, minute),
            sign_ins: throttle::Throttle::new(SIGN_INS_PER_ADDRESS, minute),
        }
    }
}

impl Guards {
    /// Refuses an address that sent too many wrong creation secrets lately.
    pub fn may_try_secret(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        self.wrong_secrets.check(&addr).map_err(|wait| {
            Problem::rate_limited(
                "too many wrong creation secrets from this address; wait before trying again",
                wait,
            )
        })
    }

    /// Counts a wrong creation secret from `addr`; the refusal to answer instead when this one
    /// went past [`WRONG_SECRETS_PER_ADDRESS`].
    pub fn wrong_secret(&self, addr: std::net::IpAddr) -> Option<Problem> {
        self.wrong_secrets.hit(&addr).err().map(|wait| {
            Problem::rate_limited(
                "too many wrong creation secrets from this address; wait before trying again",
                wait,
            )
        })
    }

    /// Counts a creation from `addr`, refusing past [`CREATIONS_PER_ADDRESS`].
    pub fn may_create(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        self.creations.hit(&addr).map_err(|wait| {
            Problem::rate_limited(
                format!(
                    "this address created {CREATIONS_PER_ADDRESS} reviews in the last minute; \
                     try again shortly"
                ),
                wait,
            )
        })
    }

    /// Counts a join from `addr`, refusing past [`JOINS_PER_ADDRESS`] or after too many wrong
    /// invites.
    pub fn may_join(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        let wait = self
            .wrong_invites
            .check(&addr)
            .err()
            .or_else(|| self.joins.hit(&addr).err());
        match wait {
            Some(wait) => Err(Problem::rate_limited(
                "too many joins or wrong invite links from this address; wait before trying again",
                wait,
            )),
            None => Ok(()),
        }
    }

    /// Refuses looking up an invite from `addr` while it is waiting after too many wrong
    /// invites (looking up is not counted as a join).
    pub fn may_look_up_invite(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        self.wrong_invites.check(&addr).map_err(|wait| {
            Problem::rate_limited(
                "too many joins or wrong invite links from this address; wait before trying again",
                wait,
            )
        })
    }

    /// Counts a join through the invite whose hash is `invite`, refusing past
    /// [`JOINS_PER_INVITE`].
    pub fn may_join_through(&self, invite: &[u8; 32]) -> Result<(), Problem> {
        self.invites.hit(invite).map_err(|wait| {
            Problem::rate_limited(
                format!(
                    "this invite link was used to join {JOINS_PER_INVITE} times in the last \
                     minute; try again shortly"
                ),
                wait,
            )
        })
    }

    /// Guards that never refuse, for tests that flood on purpose.
    /// Counts a sign-in begun from `addr`; refused past [`SIGN_INS_PER_ADDRESS`] a minute.
    pub fn may_begin_sign_in(&self, addr: std::net::IpAddr) -> Result<(), Problem> {
        self.sign_ins.hit(&addr).map_err(|wait| {
            Problem::rate_limited(
                format!(
                    "this address began {SIGN_INS_PER_ADDRESS} sign-ins in the last minute; try \
                     again shortly"
                ),
                wait,
            )
        })
    }

    #[cfg(test)]
    pub fn unlimited() -> Guards {
        let minute = std::time::Duration::from_secs(60);
        Guards {
            creations: throttle::Throttle::new(u32::MAX, minute),
            wrong_secrets: throttle::Throttle::new(u32::MAX, minute),
            joins: throttle::Throttle::new(u32::MAX, minute),
            wrong_invites: throttle::Throttle::new(u32::MAX, minute),
            invites: throttle::Throttle::new(u32::MAX, minute),
            sign_ins: throttle::Throttle::new(u32::MAX, minute),
        }
    }

    /// Counts a wrong invite token from `addr`; the refusal to answer instead when this one
    /// went past [`WRONG_INVITES_PER_ADDRESS`].
    pub fn wrong_invite(&self, addr: std::net::IpAddr) -> Option<Problem> {
        self.wrong_invites.hit(&addr).err().map(|wait| {
            Problem::rate_limited(
                "too many joins or wrong invite links from this address; wait before trying again",
                wait,
            )
        })
    }
}
