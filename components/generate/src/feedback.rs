//! `POST /v1/feedback`: authenticate (API key), parse the score
//! (`dol_core::optimize::feedback`), store it against the request it names
//! (answered for the same key), fold it into the routing state (the
//! model's feedback EWMA), answer 201 with what it was attributed to.

use dol_core::error::ApiError;
use dol_core::optimize::feedback::{self, FeedbackError};
use dol_core::orgs::Role;
use spin_sdk::http::Response;

use crate::request::Incoming;
use crate::{books, config, reply};
use dol_spin_platform::{self as platform, SpinKv, SpinSql};

/// Serves `POST /v1/feedback`. A request answered a moment ago may still
/// have its booking pending (`crate::books`): an unknown id is looked up
/// again once the trailing batches are written before it is refused.
pub async fn post_feedback(req: &Incoming) -> Response {
    let settings = match config::load() {
        Ok(s) => s,
        Err(e) => return reply::openai(&ApiError::from(e)),
    };
    let db = match platform::open_db() {
        Ok(db) => db,
        Err(e) => return reply::internal("feedback", &e),
    };
    // Feedback is on the key's own requests, which only a generating key has.
    let caller = match reply::authenticate(req, &db, &settings.bootstrap_key, Role::Generate) {
        Ok(c) => c,
        Err(response) => return response,
    };
    let input = match feedback::parse(&req.body) {
        Ok(f) => f,
        Err(e) => return reply::openai(&ApiError::from(e)),
    };
    let now = u64::try_from(platform::now_ms()).unwrap_or(0);
    let stored = books::find_answered(|| {
        match feedback::record(&mut SpinSql(&db), &input, &caller.id, now) {
            Ok(Err(FeedbackError::UnknownRequest(_))) => Ok(None),
            other => other.map(Some),
        }
    })
    .await
    .map(|found| {
        found.unwrap_or_else(|| Err(FeedbackError::UnknownRequest(input.request_id.clone())))
    });
    match stored {
        Ok(Ok(attributed)) => {
            // The feedback is stored either way; routing learns it when it can.
            let folded = SpinKv::open_default()
                .map_err(|e| format!("{e:#}"))
                .and_then(|mut kv| {
                    feedback::fold_into_routing(&mut kv, &attributed).map_err(|e| e.to_string())
                });
            if let Err(e) = folded {
                eprintln!("feedback: routing state not updated: {e}");
            }
            platform::json(201, &serde_json::json!(attributed))
        }
        Ok(Err(e)) => reply::openai(&ApiError::from(e)),
        Err(e) => reply::internal("feedback: store", &e),
    }
}
