//! `GET /v1/videos/{id}/content`: a redirect to the platform's URL, or the
//! bytes fetched from a platform that needs DOL's key for them.

use dol_core::error::{ApiError, Code};
use dol_core::video::service::{self, Content};
use spin_sdk::http::{Request, Response};

use crate::routes::{NAME, caller, fail, open, query};
use dol_spin_platform::SpinSql;
use dol_spin_platform::net;

/// Serves the content of video `id`.
pub fn content(req: &Request, id: &str) -> Response {
    let found = open().and_then(|(settings, db)| {
        let who = caller(req, &db, &settings)?;
        let variant = query(req, "variant")?;
        service::content(
            &mut SpinSql(&db),
            &settings,
            &who.id,
            id,
            variant.as_deref(),
        )
    });
    match found {
        Err(e) => fail(&e),
        Ok(Content::Redirect(url)) => Response::builder()
            .status(302)
            .header("location", url)
            .build(),
        Ok(Content::Fetch(spec)) => match net::fetch(&spec) {
            // The platform's own type: a thumbnail or spritesheet is an image.
            Ok((200, content_type, bytes)) => Response::builder()
                .status(200)
                .header(
                    "content-type",
                    if content_type.is_empty() {
                        "application/octet-stream".to_owned()
                    } else {
                        content_type
                    },
                )
                .body(bytes)
                .build(),
            Ok((status, _, _)) => fail(&ApiError::new(
                Code::UpstreamFailed,
                format!("The platform answered HTTP {status} for the content."),
            )),
            Err(e) => {
                eprintln!("{NAME}: fetching the content of {id}: {e}");
                fail(&ApiError::new(
                    Code::UpstreamFailed,
                    "The platform could not be reached for the content.",
                ))
            }
        },
    }
}
