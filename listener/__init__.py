"""Sources -> Kafka: the Mention record, topics, error kinds, connectors and the producer."""
