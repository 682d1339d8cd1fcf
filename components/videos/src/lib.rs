//! DOL's videos component: async video jobs in the shape of OpenAI's video
//! object (`POST /v1/videos`, `GET /v1/videos[/{id}[/content]]`,
//! `DELETE /v1/videos/{id}`, `POST /v1/videos/{id}/remix`) and the
//! platforms' signed callbacks
//! (`POST /v1/videos/{id}/callback`). Every decision is
//! `dol_core::video::service`'s; the `video-jobs` scan (in `scans`) polls.

// `#[http_component]` expands to wit-bindgen export glue that needs `unsafe`;
// the allow is scoped to that module, which holds only the routing.
mod content;
#[allow(unsafe_code)]
mod http;
mod routes;
