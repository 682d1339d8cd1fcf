//! A dependency component: exports `dol:test-greet/greet`.

// wit-bindgen's canonical-ABI glue and `export!` need `unsafe` and
// `#[export_name]`; the allow covers the generated code only.
#[allow(unsafe_code)]
mod bindings {
    wit_bindgen::generate!({ path: "../wit", world: "greeter" });

    use super::Greeter;
    export!(Greeter);
}

struct Greeter;

impl bindings::exports::dol::test_greet::greet::Guest for Greeter {
    fn greet(name: String) -> String {
        format!("hello, {name}")
    }
}
