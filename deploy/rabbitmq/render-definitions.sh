#!/bin/sh
# Writes RabbitMQ's definitions (users, the rwasync vhost, permissions, policies) from the template
# TEMPLATE to OUTPUT, with the passwords taken from the environment, so that no password is kept in
# the repository or an image. docker-compose.yml runs it before the broker starts.
# Usage: render-definitions.sh TEMPLATE OUTPUT
set -eu
template=$1 output=$2
for name in RWASYNC_RABBITMQ_PASSWORD RWASYNC_RABBITMQ_ADMIN_PASSWORD; do
	eval "value=\${$name:-}"
	case $value in
	"")
		echo "$name is not set: see .env.example" >&2
		exit 1
		;;
	*[!A-Za-z0-9._~-]*)
		# The password goes into JSON here and into an AMQP URL in the services, both unescaped.
		echo "$name may hold only letters, digits and . _ ~ - (openssl rand -hex 24 makes one)" >&2
		exit 1
		;;
	esac
done
umask 077
sed -e "s/@RWASYNC_RABBITMQ_PASSWORD@/$RWASYNC_RABBITMQ_PASSWORD/g" \
	-e "s/@RWASYNC_RABBITMQ_ADMIN_PASSWORD@/$RWASYNC_RABBITMQ_ADMIN_PASSWORD/g" \
	"$template" >"$output"
