//! org.varlink.service: introspection with the real interface definitions.

use dchat_control::api;
use dchat_control::varlink::errors as std_errors;
use dchat_control::{interfaces, Reply};
use serde_json::{json, Value};

use crate::control::dispatch::{encode, parse};

pub fn call(method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::GET_INFO => {
            parse::<api::Empty>(params)?;
            encode(service_info())
        }
        api::GET_INTERFACE_DESCRIPTION => {
            let p: api::InterfaceDescriptionParams = parse(params)?;
            match interfaces::description(&p.interface) {
                Some(d) => encode(api::InterfaceDescription {
                    description: d.to_string(),
                }),
                None => Err(Reply::error(
                    std_errors::INTERFACE_NOT_FOUND,
                    json!({ "interface": p.interface }),
                )),
            }
        }
        other => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": other }),
        )),
    }
}

fn service_info() -> api::ServiceInfo {
    api::ServiceInfo {
        vendor: "dchat".into(),
        product: "dchatd".into(),
        version: crate::VERSION.into(),
        url: "https://example.invalid/dchat".into(),
        interfaces: interfaces::ALL.iter().map(|(name, _)| name.to_string()).collect(),
    }
}
