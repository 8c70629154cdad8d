package amqpwire

//go:generate go run ./internal/gen -spec ../../shared/amqp/amqp0-9-1.extended.xml -out spec_gen.go
