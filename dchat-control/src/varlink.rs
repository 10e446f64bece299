//! Varlink message shapes and the standard `org.varlink.service` errors.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A method call as sent by a client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub method: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub oneway: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub more: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    pub upgrade: bool,
}

/// A reply, or an error when `error` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reply {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "is_false")]
    pub continues: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl Reply {
    /// A successful reply carrying `parameters`.
    pub fn ok(parameters: Value) -> Reply {
        Reply {
            parameters: Some(parameters),
            continues: false,
            error: None,
        }
    }

    /// A typed error reply.
    pub fn error(name: &str, parameters: Value) -> Reply {
        Reply {
            parameters: Some(parameters),
            continues: false,
            error: Some(name.to_string()),
        }
    }

    /// Parameters as a JSON object (an empty one when absent).
    pub fn parameters_object(&self) -> Value {
        self.parameters.clone().unwrap_or_else(|| Value::Object(Map::new()))
    }
}

/// Names of the standard errors every Varlink service may return.
pub mod errors {
    pub const INTERFACE_NOT_FOUND: &str = "org.varlink.service.InterfaceNotFound";
    pub const METHOD_NOT_FOUND: &str = "org.varlink.service.MethodNotFound";
    pub const METHOD_NOT_IMPLEMENTED: &str = "org.varlink.service.MethodNotImplemented";
    pub const INVALID_PARAMETER: &str = "org.varlink.service.InvalidParameter";
    pub const PERMISSION_DENIED: &str = "org.varlink.service.PermissionDenied";
    pub const EXPECTED_MORE: &str = "org.varlink.service.ExpectedMore";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_omits_false_flags_and_reads_missing_ones() {
        let call = Call {
            method: "io.dchat.Daemon.Status".into(),
            parameters: None,
            oneway: false,
            more: true,
            upgrade: false,
        };
        let text = serde_json::to_string(&call).unwrap();
        assert_eq!(text, r#"{"method":"io.dchat.Daemon.Status","more":true}"#);
        let back: Call = serde_json::from_str(r#"{"method":"x.Y"}"#).unwrap();
        assert!(!back.more && !back.oneway && back.parameters.is_none());
    }

    #[test]
    fn error_reply_shape() {
        let r = Reply::error(errors::METHOD_NOT_FOUND, json!({"method": "a.B"}));
        assert_eq!(
            serde_json::to_value(&r).unwrap(),
            json!({"error": "org.varlink.service.MethodNotFound", "parameters": {"method": "a.B"}})
        );
    }
}
