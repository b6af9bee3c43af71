// Deep async state machines (the model's futures nest) need more than the default.
#![recursion_limit = "256"]

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = switchboard::init(sweeper::NEEDS).await?;
    let deps = &deps;
    run(service_fn(move |event: LambdaEvent<Value>| async move {
        Ok::<_, Error>(sweeper::handler(deps, event.payload).await)
    }))
    .await
}
