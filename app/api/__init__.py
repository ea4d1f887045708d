"""The HTTP layer: thin routers, dependencies, middleware, error handlers, OpenAPI details."""
