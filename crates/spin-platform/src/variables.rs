//! Spin variables, read once per instance.
//!
//! The gateway reads about twenty variables per request (its settings, CORS,
//! the database URL, tokens); each read is a host call. Spin resolves a
//! variable from the manifest and its providers, which do not change while an
//! app runs (the static and environment providers), or change rarely (Vault,
//! Azure Key Vault): an instance keeps what it read. A WASI 0.2 instance
//! answers one request, so nothing changes for it; a reused WASI 0.3 instance
//! lives at most `--max-instance-reuse-count` requests (128 by default, on
//! Spin and `dol up`) or its idle timeout, which bounds how long a rotated
//! secret takes to reach every request.

use std::cell::RefCell;
use std::collections::HashMap;

/// What one instance has read: each variable's value or its error, as the
/// first read answered it.
#[derive(Debug)]
struct Memo<E> {
    read: HashMap<String, Result<String, E>>,
}

impl<E> Default for Memo<E> {
    fn default() -> Self {
        Self {
            read: HashMap::new(),
        }
    }
}

impl<E: Clone> Memo<E> {
    /// `name`'s value: the remembered answer, else `lookup`'s (remembered).
    fn get(
        &mut self,
        name: &str,
        lookup: impl FnOnce(&str) -> Result<String, E>,
    ) -> Result<String, E> {
        if let Some(answer) = self.read.get(name) {
            return answer.clone();
        }
        let answer = lookup(name);
        self.read.insert(name.to_owned(), answer.clone());
        answer
    }
}

thread_local! {
    // A component instance runs on one thread; the memo lives as long as it.
    static INSTANCE: RefCell<Memo<spin_sdk::variables::Error>> = RefCell::new(Memo::default());
}

/// The Spin variable `name` (`spin_sdk::variables::get`), read once per
/// instance (see the module's documentation).
pub fn get(name: &str) -> Result<String, spin_sdk::variables::Error> {
    INSTANCE.with(|memo| memo.borrow_mut().get(name, spin_sdk::variables::get))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    #[test]
    fn each_variable_is_looked_up_once_and_its_answer_kept() {
        let lookups = Cell::new(0);
        let lookup = |name: &str| {
            lookups.set(lookups.get() + 1);
            match name {
                "token" => Ok("secret".to_owned()),
                other => Err(format!("no variable {other}")),
            }
        };
        let mut memo = Memo::default();
        assert_eq!(memo.get("token", lookup), Ok("secret".to_owned()));
        assert_eq!(memo.get("token", lookup), Ok("secret".to_owned()));
        assert_eq!(lookups.get(), 1);
        // An undefined variable stays undefined for the instance too.
        assert_eq!(
            memo.get("missing", lookup),
            Err("no variable missing".to_owned())
        );
        assert_eq!(
            memo.get("missing", lookup),
            Err("no variable missing".to_owned())
        );
        assert_eq!(lookups.get(), 2);
    }
}
