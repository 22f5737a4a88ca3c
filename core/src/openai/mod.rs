//! The OpenAI and Azure OpenAI surface: path styles, the request-body peek, error bodies.

pub(crate) mod choices;
mod counts;
mod keep;
mod path;
mod peek;
mod responses;

pub use path::{
    backend_target, backend_target_into, classify, is_deployment_operation, model_in_body,
    query_param, ApiPath, PathError, Style,
};
pub use peek::{multipart_field, peek, MultipartError, Peek, PeekError, MAX_BOUNDARY_BYTES};
mod tap;
mod usage;
pub use tap::{coding_of, is_accounted, Coding, Undecoded, UsageTap, MAX_DECODED_BYTES};
pub use usage::{Tapped, Usage};
