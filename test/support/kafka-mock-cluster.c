/*
 * A Kafka-protocol test cluster for botqueue's Kafka tests: librdkafka's mock cluster (what
 * librdkafka's own test suite runs against) with 3 brokers on loopback.
 *
 * Prints one line "bootstraps HOST:PORT,HOST:PORT,..." then reads commands on stdin, one per
 * line, and answers each with "ok" or "error <text>":
 *   topic NAME PARTITIONS            create a topic (replication factor 3)
 *   down BROKER_ID / up BROKER_ID    take a broker off the network / bring it back
 *   leader TOPIC PARTITION BROKER_ID move a partition's leader
 *   errors API_KEY COUNT CODE        the next COUNT requests of API_KEY fail with CODE
 *   quit                             (or end of stdin) destroy the cluster and exit
 *
 * Build: gcc -O2 -o kafka-mock-cluster kafka-mock-cluster.c -lrdkafka
 */
#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(void) {
  char errstr[512];
  rd_kafka_conf_t *conf = rd_kafka_conf_new();
  /* Quiet: librdkafka logs to stderr, which the tests keep for failure reports. */
  rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof errstr);
  rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
  if (!rk) {
    fprintf(stderr, "rd_kafka_new: %s\n", errstr);
    return 1;
  }
  rd_kafka_mock_cluster_t *mcluster = rd_kafka_mock_cluster_new(rk, 3);
  if (!mcluster) {
    fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
    return 1;
  }
  setvbuf(stdout, NULL, _IOLBF, 0);
  printf("bootstraps %s\n", rd_kafka_mock_cluster_bootstraps(mcluster));

  char line[1024], name[512];
  while (fgets(line, sizeof line, stdin)) {
    int a = 0, b = 0, c = 0;
    rd_kafka_resp_err_t err = RD_KAFKA_RESP_ERR_NO_ERROR;
    if (sscanf(line, "topic %511s %d", name, &a) == 2) {
      err = rd_kafka_mock_topic_create(mcluster, name, a, 3);
    } else if (sscanf(line, "down %d", &a) == 1) {
      err = rd_kafka_mock_broker_set_down(mcluster, a);
    } else if (sscanf(line, "up %d", &a) == 1) {
      err = rd_kafka_mock_broker_set_up(mcluster, a);
    } else if (sscanf(line, "leader %511s %d %d", name, &a, &b) == 3) {
      err = rd_kafka_mock_partition_set_leader(mcluster, name, a, b);
    } else if (sscanf(line, "errors %d %d %d", &a, &b, &c) == 3) {
      for (int i = 0; i < b; i++) rd_kafka_mock_push_request_errors(mcluster, a, 1, (rd_kafka_resp_err_t)c);
    } else if (strncmp(line, "quit", 4) == 0) {
      break;
    } else {
      printf("error unknown command\n");
      continue;
    }
    if (err) printf("error %s\n", rd_kafka_err2str(err));
    else printf("ok\n");
  }
  rd_kafka_mock_cluster_destroy(mcluster);
  rd_kafka_destroy(rk);
  return 0;
}
