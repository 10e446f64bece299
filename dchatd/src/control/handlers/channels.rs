//! io.dchat.Channels: channels on chain.

use std::sync::Arc;

use dchat_control::api;
use dchat_control::varlink::errors as std_errors;
use dchat_control::Reply;
use serde_json::{json, Value};

use crate::control::dispatch::{encode, parse, service_error};
use crate::service::Node;

pub async fn call(node: &Arc<Node>, method: &str, params: Value) -> Result<Value, Reply> {
    match method {
        api::CHANNEL_CREATE => encode(node.create_channel(parse(params)?).await.map_err(service_error)?),
        api::CHANNEL_JOIN => encode(node.join_channel(parse(params)?).await.map_err(service_error)?),
        api::CHANNEL_LEAVE => encode(node.leave_channel(parse(params)?).await.map_err(service_error)?),
        api::CHANNEL_INVITE => encode(node.invite_to_channel(parse(params)?).await.map_err(service_error)?),
        api::CHANNEL_LIST => {
            parse::<api::Empty>(params)?;
            let channels = node.list_channels().map_err(service_error)?;
            encode(api::ChannelList { channels })
        }
        api::CHANNEL_SHOW => {
            let p: api::ChannelName = parse(params)?;
            let channel = node.show_channel(&p.channel).map_err(service_error)?;
            encode(api::ChannelReply { channel })
        }
        other => Err(Reply::error(
            std_errors::METHOD_NOT_IMPLEMENTED,
            json!({ "method": other }),
        )),
    }
}
