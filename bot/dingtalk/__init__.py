"""DingTalk adapter: callback verification and parsing, the OpenAPI client and the custom group robot client."""
