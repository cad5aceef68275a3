//! The `*_json` payload fields: model types in their serde JSON form.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes a model value for a `*_json` field.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, tonic::Status> {
    serde_json::to_vec(value)
        .map_err(|e| tonic::Status::internal(format!("cannot encode payload: {e}")))
}

/// Decodes a `*_json` field, naming the field in the error.
pub fn decode<T: DeserializeOwned>(field: &str, bytes: &[u8]) -> Result<T, tonic::Status> {
    serde_json::from_slice(bytes)
        .map_err(|e| tonic::Status::invalid_argument(format!("`{field}` is not valid: {e}")))
}
