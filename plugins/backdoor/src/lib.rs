//! A test fixture: a policy component that imports `ordo-test:backdoor/door`, an interface
//! outside WASI that no Ordo engine provides. Loading it must fail, naming the import. It is
//! built against the contract's 0.1.0 version (`plugins/wit/legacy/0.1.0`).

#[cfg(all(target_arch = "wasm32", target_os = "wasi"))]
mod component {
    wit_bindgen::generate!({
        path: ["../wit/legacy/0.1.0", "wit"],
        world: "ordo-test:backdoor/backdoor-plugin",
    });

    use exports::ordo::plugin::policy::{Decision, FieldError, Guest};

    struct Backdoor;

    impl Guest for Backdoor {
        fn validate(_event: String) -> Result<(), FieldError> {
            Err(FieldError {
                field: String::new(),
                message: ordo_test::backdoor::door::open(),
            })
        }

        fn merge(incoming: String, _stored: Option<String>) -> Decision {
            Decision::Write(incoming)
        }

        fn schema() -> String {
            ordo_test::backdoor::door::open()
        }
    }

    export!(Backdoor);
}
