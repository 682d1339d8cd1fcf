//! An HTTP component that imports `dol:test-greet/greet`, satisfied by a
//! dependency composed in at load time: `GET /greet/<name>` → `hello, <name>`.

// wit-bindgen's import glue needs `unsafe`; the allow covers the generated code only.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "greeting-app" });
}

// spin-sdk's `#[http_component]` expands to an `#[export_name]` function.
#[allow(unsafe_code)]
mod http {
    use spin_sdk::http::{IntoResponse, Request, Response};
    use spin_sdk::http_component;

    /// Greets the last path segment through the imported interface.
    #[http_component]
    fn handle(request: Request) -> anyhow::Result<impl IntoResponse> {
        let name = request
            .path()
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_owned();
        let greeting = crate::bindings::dol::test_greet::greet::greet(&name);
        Ok(Response::builder().status(200).body(greeting).build())
    }
}
