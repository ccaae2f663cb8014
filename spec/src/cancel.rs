//! Cancellation (SPEC.md §7): the `$/cancelRequest` notification.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::message::Id;
use crate::method::NotificationMethod;

/// `$/cancelRequest` (SPEC.md §7.1), either direction.
#[derive(Debug, Clone, Copy)]
pub enum CancelRequest {}

impl NotificationMethod for CancelRequest {
    const METHOD: &'static str = "$/cancelRequest";
    type Params = CancelParams;
}

/// Params of `$/cancelRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct CancelParams {
    /// The id of the request to cancel.
    pub id: Id,
}
