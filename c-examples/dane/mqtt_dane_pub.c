/*
 * A libmosquitto publisher that authenticates its broker by DNSSEC-validated TLSA records.
 *
 * It is an ordinary libmosquitto program that hands its own SSL_CTX to the library
 * (MOSQ_OPT_SSL_CTX); what adds DANE is one call on that context,
 * iotsafe_dane_ctx_enable_server_auth(), after which every connection made from the context
 * looks up _<port>._tcp.<broker> and verifies the broker's certificate against those records
 * (plus, once per process, the handle from iotsafe_dane_new() that holds the resolver).
 *
 * Usage: mqtt_dane_pub HOST PORT TOPIC MESSAGE
 * Environment: IOTSAFE_DANE_RESOLVER (ADDR:PORT of the DNS server, default 127.0.0.1:53),
 *              IOTSAFE_DANE_TRUST_ANCHOR (file of root DNSKEY/DS lines, default the IANA root),
 *              IOTSAFE_DANE_POLICY ("require", the default, or "opportunistic").
 * Exit status: 0 published, 1 not connected or not published, 2 usage or set-up error.
 */
#define _POSIX_C_SOURCE 200809L

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mosquitto.h>
#include <openssl/ssl.h>

#include <iotsafe_dane.h>

static bool published;
static int connack = -1;

static void on_connect(struct mosquitto *mosq, void *obj, int rc)
{
	(void)mosq;
	(void)obj;
	connack = rc;
}

static void on_publish(struct mosquitto *mosq, void *obj, int mid)
{
	(void)mosq;
	(void)obj;
	(void)mid;
	published = true;
}

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s HOST PORT TOPIC MESSAGE\n", argv[0]);
		return 2;
	}
	const char *host = argv[1];
	int port = atoi(argv[2]);
	const char *topic = argv[3];
	const char *message = argv[4];
	if (port <= 0 || port > 65535) {
		fprintf(stderr, "bad port %s\n", argv[2]);
		return 2;
	}
	const char *policy_name = getenv("IOTSAFE_DANE_POLICY");
	int policy = (policy_name && strcmp(policy_name, "opportunistic") == 0)
			     ? IOTSAFE_DANE_OPPORTUNISTIC
			     : IOTSAFE_DANE_REQUIRE;

	/* One handle per process: the validating resolver and its cache. */
	iotsafe_dane *dane =
		iotsafe_dane_new(getenv("IOTSAFE_DANE_RESOLVER"), getenv("IOTSAFE_DANE_TRUST_ANCHOR"));
	if (!dane) {
		fprintf(stderr, "DANE set-up failed: %s\n", iotsafe_dane_last_error());
		return 2;
	}

	SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
	if (!ctx || !SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION)) {
		fprintf(stderr, "cannot create an SSL_CTX\n");
		return 2;
	}

	/* The added call: DANE server authentication on every connection made from ctx. */
	if (iotsafe_dane_ctx_enable_server_auth(dane, ctx, (uint16_t)port, policy) != 1) {
		fprintf(stderr, "DANE set-up failed: %s\n", iotsafe_dane_last_error());
		return 2;
	}

	mosquitto_lib_init();
	struct mosquitto *mosq = mosquitto_new(NULL, true, NULL);
	if (!mosq) {
		fprintf(stderr, "mosquitto_new failed\n");
		return 2;
	}
	mosquitto_connect_callback_set(mosq, on_connect);
	mosquitto_publish_callback_set(mosq, on_publish);
	mosquitto_void_option(mosq, MOSQ_OPT_SSL_CTX, ctx);
	/* Use the context as it is: libmosquitto's own CA/host-name settings stay out of it. */
	mosquitto_int_option(mosq, MOSQ_OPT_SSL_CTX_WITH_DEFAULTS, 0);

	int status = 1;
	/* The TLS handshake (and with it the DANE check) may finish in the loop, after
	 * mosquitto_connect() returned: wait for the broker's CONNACK (at most 10 s). */
	int rc = mosquitto_connect(mosq, host, port, 30);
	time_t deadline = time(NULL) + 10;
	while (rc == MOSQ_ERR_SUCCESS && connack < 0 && time(NULL) < deadline)
		rc = mosquitto_loop(mosq, 100, 1);
	if (rc != MOSQ_ERR_SUCCESS || connack != 0) {
		/* libmosquitto ran the handshake on this thread: its DANE refusal is this thread's. */
		const char *why = iotsafe_dane_last_error();
		fprintf(stderr, "cannot connect to %s:%d: %s", host, port,
			rc != MOSQ_ERR_SUCCESS ? mosquitto_strerror(rc)
			: connack > 0	       ? mosquitto_connack_string(connack)
					       : "no CONNACK");
		if (*why)
			fprintf(stderr, "; DANE %s: %s",
				iotsafe_dane_reason_name(iotsafe_dane_last_reason(NULL)), why);
		fprintf(stderr, "\n");
		goto out;
	}
	rc = mosquitto_publish(mosq, NULL, topic, (int)strlen(message), message, 1, false);
	if (rc != MOSQ_ERR_SUCCESS) {
		fprintf(stderr, "publish failed: %s\n", mosquitto_strerror(rc));
		goto out;
	}
	/* QoS 1: wait for the broker's PUBACK (at most 10 s). */
	deadline = time(NULL) + 10;
	while (!published && time(NULL) < deadline) {
		rc = mosquitto_loop(mosq, 100, 1);
		if (rc != MOSQ_ERR_SUCCESS) {
			fprintf(stderr, "connection lost: %s\n", mosquitto_strerror(rc));
			goto out;
		}
	}
	if (!published) {
		fprintf(stderr, "no PUBACK from %s:%d\n", host, port);
		goto out;
	}
	printf("published to %s on %s:%d (broker authenticated by DANE)\n", topic, host, port);
	status = 0;
	mosquitto_disconnect(mosq);

out:
	mosquitto_destroy(mosq);
	mosquitto_lib_cleanup();
	SSL_CTX_free(ctx);
	iotsafe_dane_free(dane);
	return status;
}
