// Deep async state machines (the model's futures nest) need more than the default.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = switchboard::init(claim_room::NEEDS).await?;
    let deps = &deps;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Error>(claim_room::handler(deps, event.payload).await)
        },
    ))
    .await
}
