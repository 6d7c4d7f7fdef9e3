//! Extractors that turn framework rejections into problems with named fields.

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use crate::problem::{ApiError, FieldError};

/// `Json<T>` whose rejections are problems: 415 without a JSON content type, 413 when too large,
/// 400 for malformed JSON, 422 naming the field for a value of the wrong type or shape.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(ApiJson(v)),
            Err(rejection) => Err(json_rejection(rejection)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    match r {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send the body as application/json",
        ),
        JsonRejection::JsonSyntaxError(e) => ApiError::bad_request("malformed_json", e.body_text()),
        JsonRejection::JsonDataError(e) => {
            let text = e.body_text();
            ApiError::validation(vec![FieldError::new(field_of(&text), "invalid", text)])
        }
        JsonRejection::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "payload_too_large",
                "the request body is larger than this server accepts",
            )
        }
        other => ApiError::new(other.status(), "bad_request", other.body_text()),
    }
}

/// Picks the field a serde message is about: the path before `:` (serde_path) or a quoted name.
fn field_of(message: &str) -> String {
    let quoted = message.split('`').nth(1).filter(|s| !s.is_empty());
    if let Some(rest) =
        message.strip_prefix("Failed to deserialize the JSON body into the target type: ")
    {
        if let Some((path, _)) = rest.split_once(": ")
            && !path.contains(' ')
        {
            return format!("body.{path}");
        }
        if rest.starts_with("missing field") || rest.starts_with("unknown field") {
            return format!("body.{}", quoted.unwrap_or(""));
        }
    }
    "body".to_string()
}

/// `Query<T>` whose rejection is a 400 problem naming the query string.
#[derive(Debug, Clone, Copy, Default)]
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(v)) => Ok(ApiQuery(v)),
            Err(QueryRejection::FailedToDeserializeQueryString(e)) => {
                let text = e.body_text();
                Err(ApiError::bad_request("invalid_query", text.clone())
                    .with_errors(vec![FieldError::new("query", "invalid", text)]))
            }
            Err(other) => Err(ApiError::bad_request("invalid_query", other.body_text())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::field_of;

    #[test]
    fn serde_messages_name_the_field() {
        let p = "Failed to deserialize the JSON body into the target type: ";
        assert_eq!(
            field_of(&format!(
                "{p}quantity: invalid type: string \"x\", expected u32 at line 1 column 17"
            )),
            "body.quantity"
        );
        assert_eq!(
            field_of(&format!("{p}missing field `item_name` at line 1 column 2")),
            "body.item_name"
        );
        assert_eq!(
            field_of(&format!("{p}unknown field `extra`, expected one of `a`")),
            "body.extra"
        );
        assert_eq!(field_of("something else"), "body");
    }
}
