package admin

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/segment"
)

// collector exposes the broker's figures to Prometheus at scrape time,
// under RabbitMQ's metric names where RabbitMQ has one (its prometheus
// plugin's per-object names for queues) and warren_* for storage.
type collector struct{ b Broker }

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(name, help, labels, nil)
}

var (
	mQueueReady     = desc("rabbitmq_queue_messages_ready", "Messages ready to be delivered to consumers", "vhost", "queue")
	mQueueUnacked   = desc("rabbitmq_queue_messages_unacked", "Messages delivered to consumers but not yet acknowledged", "vhost", "queue")
	mQueueMessages  = desc("rabbitmq_queue_messages", "Sum of ready and unacknowledged messages - total queue depth", "vhost", "queue")
	mQueueConsumers = desc("rabbitmq_queue_consumers", "Consumers on a queue", "vhost", "queue")
	mQueuePublished = desc("rabbitmq_queue_messages_published_total", "Total number of messages published into a queue", "vhost", "queue")
	mQueueDelivered = desc("rabbitmq_queue_messages_delivered_total", "Total number of messages delivered from a queue to consumers or basic.get", "vhost", "queue")
	mQueueAcked     = desc("rabbitmq_queue_messages_acked_total", "Total number of messages acknowledged on a queue", "vhost", "queue")

	mConnections = desc("rabbitmq_connections", "Connections currently open")
	mChannels    = desc("rabbitmq_channels", "Channels currently open")
	mConsumers   = desc("rabbitmq_consumers", "Consumers currently connected")
	mQueues      = desc("rabbitmq_queues", "Queues available")
	mIdentity    = desc("rabbitmq_identity_info", "RabbitMQ node & cluster identity info", "rabbitmq_node", "rabbitmq_cluster", "rabbitmq_endpoint")
	mBuild       = desc("warren_build_info", "Warren version", "version", "product")

	mGlobal = map[string]*prometheus.Desc{}

	mAlarmMem  = desc("rabbitmq_alarms_memory_used_watermark", "is the memory alarm in effect (1) or not (0)")
	mAlarmDisk = desc("rabbitmq_alarms_free_disk_space_watermark", "is the disk free space alarm in effect (1) or not (0)")
	mMemLimit  = desc("rabbitmq_resident_memory_limit_bytes", "Memory high watermark in bytes")
	mMemUsed   = desc("warren_resident_memory_bytes", "Resident memory of the broker process, as the memory alarm samples it")
	mDiskFree  = desc("rabbitmq_disk_space_available_bytes", "Disk space available in bytes")
	mDiskLimit = desc("rabbitmq_disk_space_available_limit_bytes", "Free disk space low watermark in bytes")

	mSegments     = desc("warren_storage_segments", "Segment files of all queue logs")
	mDiskBytes    = desc("warren_storage_disk_bytes", "Bytes of message data on disk (valid chunks of every segment)")
	mRawBytes     = desc("warren_storage_written_raw_bytes_total", "Chunk payload bytes written since start, before compression")
	mStoredBytes  = desc("warren_storage_written_stored_bytes_total", "Chunk bytes written since start, after compression and framing")
	mSkipped      = desc("warren_storage_skipped_records_total", "Large messages acknowledged before they were written, so never written (a stub was)")
	mSkippedBytes = desc("warren_storage_skipped_bytes_total", "Raw bytes of the large messages that were never written because they were acknowledged first")
	mRatio        = desc("warren_storage_compression_ratio", "Raw over stored bytes of the chunks written since start (1 when nothing was written)")
	mSyncRounds   = desc("warren_storage_sync_rounds_total", "Group-commit sync rounds run")
	mSyncLatency  = desc("warren_storage_sync_round_seconds", "Duration of group-commit sync rounds (seal, fdatasync, index commit)")
)

// globalCounters are RabbitMQ's rabbitmq_global_* counters, label
// protocol="amqp091".
var globalCounters = []struct {
	name, help string
	get        func(t totalsView) uint64
}{
	{"messages_received_total", "Total number of messages received from publishers", func(t totalsView) uint64 { return t.Received }},
	{"messages_received_confirm_total", "Total number of messages received from publishers expecting confirmations", func(t totalsView) uint64 { return t.ReceivedConfirm }},
	{"messages_routed_total", "Total number of messages routed to queues or streams", func(t totalsView) uint64 { return t.Routed }},
	{"messages_unroutable_dropped_total", "Total number of messages published as non-mandatory into an exchange and dropped as unroutable", func(t totalsView) uint64 { return t.UnroutableDropped }},
	{"messages_unroutable_returned_total", "Total number of messages published as mandatory into an exchange and returned to the publisher as unroutable", func(t totalsView) uint64 { return t.UnroutableReturned }},
	{"messages_confirmed_total", "Total number of messages confirmed to publishers", func(t totalsView) uint64 { return t.Confirmed }},
	{"messages_delivered_total", "Total number of messages delivered to consumers", func(t totalsView) uint64 {
		return t.DeliveredAck + t.DeliveredNoAck + t.GetAck + t.GetNoAck
	}},
	{"messages_delivered_consume_manual_ack_total", "Total number of messages delivered to consumers using basic.consume with manual acknowledgment", func(t totalsView) uint64 { return t.DeliveredAck }},
	{"messages_delivered_consume_auto_ack_total", "Total number of messages delivered to consumers using basic.consume with automatic acknowledgment", func(t totalsView) uint64 { return t.DeliveredNoAck }},
	{"messages_delivered_get_manual_ack_total", "Total number of messages delivered to consumers using basic.get with manual acknowledgment", func(t totalsView) uint64 { return t.GetAck }},
	{"messages_delivered_get_auto_ack_total", "Total number of messages delivered to consumers using basic.get with automatic acknowledgment", func(t totalsView) uint64 { return t.GetNoAck }},
	{"messages_get_empty_total", "Total number of times basic.get operations fetched no message", func(t totalsView) uint64 { return t.GetEmpty }},
	{"messages_redelivered_total", "Total number of messages redelivered to consumers", func(t totalsView) uint64 { return t.Redelivered }},
	{"messages_acknowledged_total", "Total number of messages acknowledged by consumers", func(t totalsView) uint64 { return t.Acked }},
}

func init() {
	for _, g := range globalCounters {
		mGlobal[g.name] = desc("rabbitmq_global_"+g.name, g.help, "protocol")
	}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{mQueueReady, mQueueUnacked, mQueueMessages, mQueueConsumers, mQueuePublished,
		mQueueDelivered, mQueueAcked, mConnections, mChannels, mConsumers, mQueues, mIdentity, mBuild, mSegments, mDiskBytes,
		mRawBytes, mStoredBytes, mSkipped, mSkippedBytes, mRatio, mSyncRounds, mSyncLatency, mAlarmMem, mAlarmDisk, mMemLimit, mMemUsed, mDiskFree, mDiskLimit} {
		ch <- d
	}
	for _, d := range mGlobal {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	n := c.b.Node()
	endpoint := ""
	if n.AMQPAddr != nil {
		endpoint = n.AMQPAddr.String()
	}
	gauge(mIdentity, 1, n.Node, n.Node, endpoint)
	gauge(mBuild, 1, n.Version, n.Product)

	qs, _ := c.b.Queues("")
	consumers := 0
	for _, q := range qs {
		gauge(mQueueReady, float64(q.Ready), q.VHost, q.Name)
		gauge(mQueueUnacked, float64(q.Unacked), q.VHost, q.Name)
		gauge(mQueueMessages, float64(q.Ready+q.Unacked), q.VHost, q.Name)
		gauge(mQueueConsumers, float64(q.Consumers), q.VHost, q.Name)
		counter(mQueuePublished, float64(q.Stats.Published), q.VHost, q.Name)
		counter(mQueueDelivered, float64(q.Stats.DeliveredAck+q.Stats.DeliveredNoAck+q.Stats.GetAck+q.Stats.GetNoAck), q.VHost, q.Name)
		counter(mQueueAcked, float64(q.Stats.Acked), q.VHost, q.Name)
		consumers += q.Consumers
	}
	conns := c.b.Connections()
	chans := 0
	for _, cn := range conns {
		chans += cn.Channels
	}
	gauge(mConnections, float64(len(conns)))
	gauge(mChannels, float64(chans))
	gauge(mConsumers, float64(consumers))
	gauge(mQueues, float64(len(qs)))

	t := totalsView(c.b.Totals())
	for _, g := range globalCounters {
		counter(mGlobal[g.name], float64(g.get(t)), "amqp091")
	}

	al := c.b.Alarms()
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(mAlarmMem, b2f(al.Active&broker.AlarmMemory != 0))
	gauge(mAlarmDisk, b2f(al.Active&broker.AlarmDisk != 0))
	gauge(mMemLimit, float64(al.MemoryLimit))
	gauge(mMemUsed, float64(al.MemoryUsed))
	gauge(mDiskFree, float64(al.DiskFree))
	gauge(mDiskLimit, float64(al.DiskLimit))

	st := c.b.StorageStats()
	gauge(mSegments, float64(st.Segments))
	gauge(mDiskBytes, float64(st.DiskBytes))
	counter(mRawBytes, float64(st.RawBytes))
	counter(mStoredBytes, float64(st.StoredBytes))
	counter(mSkipped, float64(st.Skipped))
	counter(mSkippedBytes, float64(st.SkippedBytes))
	ratio := 1.0
	if st.StoredBytes > 0 {
		ratio = float64(st.RawBytes) / float64(st.StoredBytes)
	}
	gauge(mRatio, ratio)
	counter(mSyncRounds, float64(st.Sync.Rounds))
	buckets := make(map[float64]uint64, len(segment.SyncBuckets))
	var cum, count uint64
	for i, ub := range segment.SyncBuckets {
		if i < len(st.Sync.Counts) {
			cum += st.Sync.Counts[i]
		}
		buckets[ub] = cum
	}
	for _, n := range st.Sync.Counts {
		count += n
	}
	ch <- prometheus.MustNewConstHistogram(mSyncLatency, count, st.Sync.Seconds, buckets)
}

// totalsView is the broker's counters, as the table above reads them.
type totalsView = broker.Totals

// newMetricsHandler builds the /metrics handler: the broker's figures plus
// the Go runtime's and the process's.
func newMetricsHandler(b Broker) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collector{b}, collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// metrics serves Prometheus' text format without authentication, as
// RabbitMQ's prometheus plugin does.
func (s *Server) metrics(r *request) error {
	s.prom.ServeHTTP(r.w, r.r)
	return nil
}
