"""WeCom (企业微信) adapter: callback crypto, callback parsing, app and group-robot API clients."""
