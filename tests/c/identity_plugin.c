/*
 * A minimal mosquitto 2.0 plugin that reads the client's DANE identity the way the broker
 * plugin does: from the certificate object mosquitto_client_certificate returns, by
 * iotsafe_dane_handshake_identity (the channel from the handshake's verification, done by
 * the preload shim in `iotsafe-run --broker`, to code that never sees the SSL). A client with
 * an identity gets it as user name and is admitted; one without is refused. Used by
 * tests/preload_broker.rs.
 */
#include <openssl/x509.h>
#include <stddef.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#include "iotsafe_dane.h"

static mosquitto_plugin_id_t *plugin_id;

static int on_basic_auth(int event, void *event_data, void *userdata)
{
	(void)event;
	(void)userdata;
	struct mosquitto_evt_basic_auth *auth = event_data;
	X509 *cert = mosquitto_client_certificate(auth->client);
	char name[256];
	int rc = cert ? iotsafe_dane_handshake_identity(cert, name, sizeof name) : 0;
	X509_free(cert);
	if (rc != 1) {
		mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity plugin: no DANE identity (%s)",
				     iotsafe_dane_last_error());
		return MOSQ_ERR_AUTH;
	}
	mosquitto_log_printf(MOSQ_LOG_NOTICE, "identity plugin: DANE identity %s", name);
	mosquitto_set_username(auth->client, name);
	return MOSQ_ERR_SUCCESS;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
	(void)supported_version_count;
	(void)supported_versions;
	return 5;
}

int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata,
			  struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	plugin_id = identifier;
	return mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL,
					   NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
	(void)userdata;
	(void)options;
	(void)option_count;
	return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
}
