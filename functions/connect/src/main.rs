// Deep async state machines (the model's futures nest) need more than the default.
#![recursion_limit = "256"]

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let deps = switchboard::init(connect::NEEDS).await?;
    let deps = &deps;
    run(service_fn(
        move |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, Error>(connect::handler(deps, event.payload).await)
        },
    ))
    .await
}
