"""Jobs (inference, what-if, batch, training) and the websocket consumers that stream them."""
