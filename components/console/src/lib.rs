//! DOL's operator console at `/admin/dol`: a sign-in form, signed session
//! cookies (`dol_core::console`) and pages whose scripts read the existing
//! JSON APIs from the same origin. Every asset is built into the `.wasm`.

// `dol_spin_platform::http_service!` expands to wit-bindgen export glue that needs `unsafe`
// (raw canonical-ABI pointers, `#[export_name]`); the allow is scoped to that
// module, which holds nothing else.
#[allow(unsafe_code)]
mod http;
mod pages;
mod session;
