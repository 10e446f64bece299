//! org.varlink.service: introspection.

use serde::{Deserialize, Serialize};

use super::MethodInfo;

pub const GET_INFO: &str = "org.varlink.service.GetInfo";
pub const GET_INTERFACE_DESCRIPTION: &str = "org.varlink.service.GetInterfaceDescription";

pub(super) const METHODS: &[MethodInfo] = &[
    MethodInfo {
        method: GET_INFO,
        read_only: true,
    },
    MethodInfo {
        method: GET_INTERFACE_DESCRIPTION,
        read_only: true,
    },
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub vendor: String,
    pub product: String,
    pub version: String,
    pub url: String,
    pub interfaces: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InterfaceDescriptionParams {
    pub interface: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceDescription {
    pub description: String,
}
