// Deep async state machines (the model's futures nest) need more than the default.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = switchboard::init(find_match::NEEDS).await?;
    let deps = &deps;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayV2httpRequest>| async move {
            Ok::<_, Error>(find_match::handler(deps, event.payload).await)
        },
    ))
    .await
}
