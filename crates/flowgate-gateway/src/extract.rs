//! Request-body extraction shared by every JSON endpoint.
//!
//! serde lets a struct be read from a JSON array (its fields in order), so
//! `[]` or `[3]` would pass for `{}` or `{"version": 3}`. Every documented
//! request body is an object; [`Json`] refuses anything else with the same
//! 422 problem as a body of the wrong shape.

use std::ops::Deref;

use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::ApiError;

/// A JSON object body decoded into `T` (limits and error mapping come from
/// the app's `JsonConfig`).
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T> Json<T> {
    /// The decoded body.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> Deref for Json<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: DeserializeOwned + 'static> FromRequest for Json<T> {
    type Error = actix_web::Error;
    type Future = LocalBoxFuture<'static, Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let body = web::Json::<Value>::from_request(req, payload);
        Box::pin(async move {
            let web::Json(value) = body.await?;
            Ok(Json(object_from_value(value)?))
        })
    }
}

/// Decodes `value` into `T` when it is a JSON object; anything else is a 422.
pub fn object_from_value<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    if !value.is_object() {
        return Err(ApiError::unprocessable(
            "the body does not have the expected shape: expected a JSON object",
        ));
    }
    serde_json::from_value(value).map_err(|e| {
        ApiError::unprocessable(format!("the body does not have the expected shape: {e}"))
    })
}
