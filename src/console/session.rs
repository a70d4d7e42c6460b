//! Console sessions: server-side, in memory, behind a random id in an
//! HttpOnly, SameSite=Strict cookie. A session holds the operator's name
//! (for the audit log), its CSRF token and a one-shot message for the next
//! page. A restart logs everyone out, which is fine for a handful of
//! operators and keeps session secrets out of the database.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session ends after this long without a request...
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// ...and after this long in any case.
pub const MAX_AGE: Duration = Duration::from_secs(12 * 60 * 60);
/// More live sessions than this and the oldest is dropped: memory stays bounded.
const MAX_SESSIONS: usize = 1000;

/// The session cookie's name.
pub const COOKIE: &str = "hubsync_session";
/// The login form's double-submit cookie (there is no session yet to hold
/// its CSRF token).
pub const LOGIN_COOKIE: &str = "hubsync_login";

struct Session {
    operator: String,
    csrf: String,
    created: Instant,
    last_seen: Instant,
    flash: Option<String>,
}

/// The signed-in operator of a request.
#[derive(Debug, Clone)]
pub struct Current {
    pub id: String,
    pub operator: String,
    pub csrf: String,
    /// A message left by the previous action ("3 messages queued again").
    pub flash: Option<String>,
}

/// Every live session.
#[derive(Default)]
pub struct Sessions {
    inner: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes from the OS-seeded CSPRNG, hex: session ids and CSRF tokens.
pub fn random_token() -> String {
    hex::encode(rand::random::<[u8; 32]>())
}

/// Compares without an early exit on the first differing byte.
pub fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        // A panic while holding the lock leaves the map consistent (every
        // change is one insert or remove), so a poisoned lock is still usable.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts a session for `operator`; returns its id.
    pub fn create(&self, operator: &str) -> String {
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| live(s, now));
        if map.len() >= MAX_SESSIONS {
            if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| k.clone()) {
                map.remove(&oldest);
            }
        }
        let id = random_token();
        map.insert(
            id.clone(),
            Session {
                operator: operator.to_string(),
                csrf: random_token(),
                created: now,
                last_seen: now,
                flash: None,
            },
        );
        id
    }

    /// The live session `id`, touched; its flash message is taken.
    pub fn get(&self, id: &str) -> Option<Current> {
        self.get_at(id, Instant::now())
    }

    fn get_at(&self, id: &str, now: Instant) -> Option<Current> {
        let mut map = self.lock();
        let s = map.get_mut(id)?;
        if !live(s, now) {
            map.remove(id);
            return None;
        }
        s.last_seen = now;
        Some(Current {
            id: id.to_string(),
            operator: s.operator.clone(),
            csrf: s.csrf.clone(),
            flash: s.flash.take(),
        })
    }

    /// Leaves a message for the session's next page.
    pub fn flash(&self, id: &str, message: String) {
        if let Some(s) = self.lock().get_mut(id) {
            s.flash = Some(message);
        }
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.last_seen) < IDLE && now.duration_since(s.created) < MAX_AGE
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_expire_when_idle_and_flash_is_shown_once() {
        let s = Sessions::default();
        let id = s.create("Dana");
        assert_eq!(id.len(), 64);
        let cur = s.get(&id).expect("a fresh session is live");
        assert_eq!(cur.operator, "Dana");
        assert_eq!(cur.csrf.len(), 64);
        assert_ne!(cur.csrf, id);
        s.flash(&id, "done".into());
        assert_eq!(s.get(&id).and_then(|c| c.flash).as_deref(), Some("done"));
        assert_eq!(s.get(&id).and_then(|c| c.flash), None);
        let later = Instant::now() + IDLE + Duration::from_secs(1);
        assert!(s.get_at(&id, later).is_none(), "an idle session ends");
        assert!(s.get(&id).is_none(), "and stays ended");
        assert!(s.get("nope").is_none());
        let id2 = s.create("Lee");
        s.remove(&id2);
        assert!(s.get(&id2).is_none(), "logout ends the session");
    }

    #[test]
    fn tokens_are_random_and_compared_whole() {
        assert_ne!(random_token(), random_token());
        assert!(same("abc", "abc"));
        assert!(!same("abc", "abd"));
        assert!(!same("abc", "abcd"));
    }
}
