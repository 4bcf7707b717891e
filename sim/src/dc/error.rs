//! API errors as the real services send them: an HTTP status plus a restify
//! `{code, message}` body (or no body at all, where SAPI sends a bare 404).

use wire::apis::{FieldError, RestError, codes};

#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// `None`: an empty body (SAPI's `res.send(404)` on some deletes).
    /// Boxed to keep `Result<_, ApiError>` small.
    pub body: Option<Box<RestError>>,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Some(Box::new(RestError::new(code, message))),
        }
    }

    /// A plain JS `Error` escaping a restify handler: 500 and no `code`.
    pub fn uncoded(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: Some(Box::new(RestError::uncoded(message))),
        }
    }

    pub fn empty(status: u16) -> Self {
        ApiError { status, body: None }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, codes::RESOURCE_NOT_FOUND, message)
    }

    /// SAPI's `validation.js`: `missing required keys: a, b`.
    pub fn missing_keys(keys: &[&str]) -> Self {
        Self::new(
            409,
            codes::MISSING_PARAMETER,
            format!("missing required keys: {}", keys.join(", ")),
        )
    }

    pub fn invalid_argument(message: impl Into<String>) -> Self {
        Self::new(409, codes::INVALID_ARGUMENT, message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, codes::INTERNAL_ERROR, message)
    }

    /// VMAPI's `ValidationFailedError` (409).
    pub fn vmapi_validation(message: &str, errors: Vec<FieldError>) -> Self {
        ApiError {
            status: 409,
            body: Some(Box::new(
                RestError::new(codes::VALIDATION_FAILED, message).with_errors(errors),
            )),
        }
    }

    /// VMAPI `{"field", "code": "Invalid", "message"}` in one call.
    pub fn vmapi_invalid(field: &str, message: &str) -> Self {
        Self::vmapi_validation(
            "Invalid Parameters",
            vec![FieldError::new(field, "Invalid", Some(message.into()))],
        )
    }

    pub fn vmapi_missing(field: &str) -> Self {
        Self::vmapi_validation(
            "Invalid Parameters",
            vec![FieldError::new(field, codes::MISSING_PARAMETER, None)],
        )
    }

    /// CNAPI rule failures: `InvalidParameters` with an `errors` array.
    pub fn cnapi_invalid(errors: Vec<FieldError>) -> Self {
        ApiError {
            status: 409,
            body: Some(Box::new(
                RestError::new(
                    codes::INVALID_PARAMETERS,
                    "Request parameters failed validation",
                )
                .with_errors(errors),
            )),
        }
    }

    /// IMGAPI's `InvalidParameter` (422).
    pub fn imgapi_invalid(field: &str, message: impl Into<String>) -> Self {
        let message = message.into();
        ApiError {
            status: 422,
            body: Some(Box::new(
                RestError::new(codes::INVALID_PARAMETER, message.clone())
                    .with_errors(vec![FieldError::new(field, "Invalid", Some(message))]),
            )),
        }
    }

    pub fn code(&self) -> Option<&str> {
        self.body.as_ref().and_then(|b| b.code.as_deref())
    }

    pub fn message(&self) -> &str {
        self.body.as_ref().map(|b| b.message.as_str()).unwrap_or("")
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.body {
            Some(b) => write!(f, "{} {b}", self.status),
            None => write!(f, "{}", self.status),
        }
    }
}

impl std::error::Error for ApiError {}
