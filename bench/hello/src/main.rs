//! A `lambda_runtime` hello world: what a Rust function costs to start before it does anything
//! of its own. The cold-start benchmark divides each function's init time by this one's.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(event.payload)
    }))
    .await
}
