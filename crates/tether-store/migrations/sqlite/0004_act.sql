-- RFC 8693 §4.1 `act` claim (JSON text) of exchanged access tokens issued with an actor token.
ALTER TABLE access_tokens ADD COLUMN act TEXT;
