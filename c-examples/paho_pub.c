/*
 * A plain Paho MQTT C publisher over mutual TLS. Nothing in it knows about smart cards: its
 * keyStore is one PEM file holding the client certificate and then the key (here a key
 * reference written by `iotsafe keyref --with-cert`), as Paho expects; with OPENSSL_CONF naming
 * a configuration that loads the iotsafe provider, the key stays on the SIM.
 *
 *   paho_pub ssl://HOST:PORT CA_FILE KEYSTORE TOPIC MESSAGE
 */
#include <stdio.h>
#include <string.h>

#include <MQTTClient.h>

int main(int argc, char **argv)
{
    if (argc != 6) {
        fprintf(stderr, "usage: %s ssl://HOST:PORT CA_FILE KEYSTORE TOPIC MESSAGE\n", argv[0]);
        return 2;
    }
    const char *uri = argv[1], *ca = argv[2], *keystore = argv[3], *topic = argv[4];
    char *message = argv[5];

    MQTTClient client;
    if (MQTTClient_create(&client, uri, "paho-iotsafe", MQTTCLIENT_PERSISTENCE_NONE, NULL)
        != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "paho_pub: cannot create a client for %s\n", uri);
        return 1;
    }
    MQTTClient_SSLOptions tls = MQTTClient_SSLOptions_initializer;
    tls.trustStore = ca;
    tls.keyStore = keystore; /* certificate, then the key, in one file */
    tls.enableServerCertAuth = 1;
    tls.verify = 1;
    MQTTClient_connectOptions options = MQTTClient_connectOptions_initializer;
    options.ssl = &tls;
    options.cleansession = 1;

    int rc = MQTTClient_connect(client, &options);
    if (rc != MQTTCLIENT_SUCCESS) {
        fprintf(stderr, "paho_pub: cannot connect to %s (%s)\n", uri, MQTTClient_strerror(rc));
        MQTTClient_destroy(&client);
        return 1;
    }
    MQTTClient_message publication = MQTTClient_message_initializer;
    publication.payload = message;
    publication.payloadlen = (int)strlen(message);
    publication.qos = 1;
    MQTTClient_deliveryToken token;
    rc = MQTTClient_publishMessage(client, topic, &publication, &token);
    if (rc == MQTTCLIENT_SUCCESS)
        rc = MQTTClient_waitForCompletion(client, token, 5000);
    if (rc != MQTTCLIENT_SUCCESS)
        fprintf(stderr, "paho_pub: publishing to %s failed (%s)\n", topic, MQTTClient_strerror(rc));
    else
        printf("published %s to %s\n", message, topic);
    MQTTClient_disconnect(client, 1000);
    MQTTClient_destroy(&client);
    return rc == MQTTCLIENT_SUCCESS ? 0 : 1;
}
