package natsauth

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"eyeflow/bus"
	"eyeflow/pipeline"
	"eyeflow/schemas"
)

// Roles besides the catalogue's stages (each stage's role is its name).
const (
	// RoleIngest is the ingest stage's role, also used by eyeflow put, the
	// watcher and the reconciler.
	RoleIngest = schemas.StageIngest
	// RoleAdmin applies the topology, creates buckets, pushes and promotes
	// models and runs the all-in-one `eyeflow up`: every subject.
	RoleAdmin = "admin"
	// RoleMinIO is MinIO's NATS notification target: it publishes
	// eye.uploads with JetStream acks on the default _INBOX (its client
	// cannot take a custom prefix; no eyeflow user replies there).
	RoleMinIO = "minio"
)

// User is one NATS user and its permissions.
type User struct {
	// Name is the NATS user name: "eyeflow-" + role.
	Name string
	Role string
	// PasswordEnv is the environment variable the server reads the
	// password from when it loads the rendered configuration.
	PasswordEnv string
	// InboxPrefix is the user's private reply subject prefix: the client
	// uses it for every request and consumer delivery, and no other user
	// may subscribe to it (so nobody reads another processor's objects
	// or API replies off a shared _INBOX.>).
	InboxPrefix string
	Publish     []string
	// PublishDeny carves out of Publish what its wildcards would grant
	// beyond the user's due: pulling from, recreating or deleting another
	// stage's durable consumer on a stream the user scans.
	PublishDeny []string
	Subscribe   []string
}

// UserName is the NATS user of a role.
func UserName(role string) string { return "eyeflow-" + role }

// InboxPrefix is the reply prefix of a user: _INBOX_<user>. Clients set it
// with nats.CustomInboxPrefix.
func InboxPrefix(user string) string { return "_INBOX_" + strings.ReplaceAll(user, ".", "_") }

// PasswordEnv is the variable holding a role's password for the server:
// EYEFLOW_NATS_PASSWORD_<ROLE>.
func PasswordEnv(role string) string {
	return "EYEFLOW_NATS_PASSWORD_" + strings.ToUpper(strings.ReplaceAll(role, "-", "_"))
}

// perms accumulates the publish subjects of one user, and those denied.
type perms struct{ pub, deny []string }

func (p *perms) add(s ...string) { p.pub = append(p.pub, s...) }

// consume is what a stage needs for its durable pull consumer: look it up,
// fetch, and acknowledge (acks are published to the message's reply
// subject, $JS.ACK.<stream>.<consumer>.<...>).
func (p *perms) consume(stream, consumer string) {
	p.add("$JS.API.CONSUMER.INFO."+stream+"."+consumer,
		"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+consumer,
		"$JS.ACK."+stream+"."+consumer+".>")
}

// read is what reading a bucket's backing stream takes: its info, single
// message gets (direct or through the API), and the ephemeral ordered
// consumers that object gets, lists and KV watches create, with their flow
// control replies.
func (p *perms) read(stream string) {
	p.add("$JS.API.STREAM.INFO."+stream,
		"$JS.API.STREAM.MSG.GET."+stream,
		"$JS.API.DIRECT.GET."+stream, "$JS.API.DIRECT.GET."+stream+".>",
		"$JS.API.CONSUMER.CREATE."+stream, "$JS.API.CONSUMER.CREATE."+stream+".>",
		"$JS.API.CONSUMER.INFO."+stream+".*",
		"$JS.API.CONSUMER.DELETE."+stream+".*",
		"$JS.FC."+stream+".>")
}

// objRead / objWrite: an object-store bucket (stream OBJ_<bucket>, subjects
// $O.<bucket>.C.* chunks and $O.<bucket>.M.* metadata). A put replaces an
// object by purging its old chunks.
func (p *perms) objRead(bucket string) { p.read("OBJ_" + bucket) }
func (p *perms) objWrite(bucket string) {
	p.objRead(bucket)
	p.add("$O."+bucket+".>", "$JS.API.STREAM.PURGE.OBJ_"+bucket)
}

// kvRead / kvWrite: a KV bucket (stream KV_<bucket>, subjects $KV.<bucket>.*).
func (p *perms) kvRead(bucket string) { p.read("KV_" + bucket) }
func (p *perms) kvWrite(bucket string) {
	p.kvRead(bucket)
	p.add("$KV." + bucket + ".>")
}

// stagePerms are what a stage's declaration in the catalogue needs: fetch
// and ack on its consumers (optional ones too), publish its subjects and its
// dead letters, its buckets as declared, and scans of the streams it reads.
func stagePerms(st pipeline.Stage) perms {
	var p perms
	for _, in := range st.Inputs {
		for _, c := range in.Consumers() {
			p.consume(in.Stream, c)
		}
	}
	p.add(st.Publishes...)
	p.add(st.DLQ())
	for _, kv := range st.KV {
		if !pipeline.IsShared(kv.Bucket) {
			p.kvOwn(kv.Bucket)
		}
		switch {
		case kv.Access == pipeline.Write && kv.Keys != "":
			p.kvRead(kv.Bucket)
			p.add("$KV." + kv.Bucket + "." + kv.Keys)
		case kv.Access == pipeline.Write:
			p.kvWrite(kv.Bucket)
		default:
			p.kvRead(kv.Bucket)
		}
	}
	for _, o := range st.Objects {
		if o.Access == pipeline.Write {
			p.objWrite(o.Bucket)
		} else {
			p.objRead(o.Bucket)
		}
	}
	for _, stream := range st.Scans {
		p.scan(st, stream)
	}
	return p
}

// scan is what reading a stream from start to end takes: an ordered
// consumer (ephemeral, named by the client, recreated with a new name on
// every fetch), so pulling from any consumer name on the stream, less the
// durable consumers of other stages, which a scan must neither drain,
// reconfigure nor delete.
func (p *perms) scan(st pipeline.Stage, stream string) {
	p.read(stream)
	p.add("$JS.API.CONSUMER.MSG.NEXT." + stream + ".*")
	for _, other := range pipeline.Stages() {
		for _, in := range other.Inputs {
			if in.Stream != stream || other.Name == st.Name {
				continue
			}
			for _, c := range in.Consumers() {
				p.deny = append(p.deny,
					"$JS.API.CONSUMER.MSG.NEXT."+stream+"."+c,
					"$JS.API.CONSUMER.CREATE."+stream+"."+c, "$JS.API.CONSUMER.CREATE."+stream+"."+c+".>",
					"$JS.API.CONSUMER.DELETE."+stream+"."+c)
			}
		}
	}
}

// kvOwn: a process binds to the buckets it uses and creates one the
// topology lacks (jetstream.OpenKeyValue), with the catalogue's
// configuration, so it may create that stream; never update it (the
// topology owns its configuration). The deployment's shared buckets are
// created by `eyeflow up` and `eyeflow buckets init` only.
func (p *perms) kvOwn(bucket string) {
	p.add("$JS.API.STREAM.CREATE.KV_" + bucket)
}

// Users is the permission table: one user per stage of the catalogue
// (package pipeline), derived from what the stage declares it reads,
// publishes and stores, and the MinIO and admin users. A stage that starts
// publishing, consuming or storing somewhere new changes its declaration
// there; the auth tests run the stages under this table.
func Users() []User {
	var users []User
	add := func(role string, p perms) {
		if role != RoleMinIO && role != RoleAdmin {
			// Every process checks it uses the deployment's object store.
			p.kvRead(bus.KVDeployment)
		}
		name := UserName(role)
		inbox := InboxPrefix(name)
		pub, sub := slices.Clone(p.pub), []string{inbox + ".>"}
		if role == RoleMinIO {
			inbox = "_INBOX"
			sub = []string{inbox + ".>"}
		}
		if role == RoleAdmin {
			// Operators' tools (nats sub 'eye.predictions.>', the nats
			// CLI's stream reports) and the all-in-one `up` run as admin.
			pub, sub = []string{">"}, []string{">"}
		}
		slices.Sort(pub)
		deny := slices.Clone(p.deny)
		slices.Sort(deny)
		users = append(users, User{
			Name: name, Role: role, PasswordEnv: PasswordEnv(role), InboxPrefix: inbox,
			Publish: slices.Compact(pub), PublishDeny: slices.Compact(deny), Subscribe: sub,
		})
	}
	for _, st := range pipeline.Stages() {
		add(st.Name, stagePerms(st))
	}
	var minio perms
	minio.add(schemas.SubjectUploads)
	add(RoleMinIO, minio)

	add(RoleAdmin, perms{})
	return users
}

// Find returns the user of a role.
func Find(users []User, role string) (User, bool) {
	for _, u := range users {
		if u.Role == role {
			return u, true
		}
	}
	return User{}, false
}

// Render writes users as a nats-server configuration (an authorization
// block, to include from the server's main file or pass to
// `eyeflow up --nats-auth-config`). Passwords are $VARIABLE references the
// server resolves from its environment when it loads the file: a missing
// variable fails the server's start instead of leaving a user open.
func Render(w io.Writer, users []User) error {
	var b strings.Builder
	b.WriteString("# NATS users and permissions of the eyeflow processors.\n")
	b.WriteString("# Generated by `eyeflow nats-config` from security/natsauth: do not edit.\n")
	b.WriteString("# Passwords come from the server's environment (one variable per user).\n")
	b.WriteString("authorization {\n  users = [\n")
	for _, u := range users {
		fmt.Fprintf(&b, "    # %s\n", u.Role)
		fmt.Fprintf(&b, "    {\n      user: %s\n      password: $%s\n", strconv.Quote(u.Name), u.PasswordEnv)
		b.WriteString("      permissions: {\n")
		writeList(&b, "publish", u.Publish, u.PublishDeny)
		writeList(&b, "subscribe", u.Subscribe, nil)
		b.WriteString("      }\n    }\n")
	}
	b.WriteString("  ]\n}\n")
	_, err := io.WriteString(w, b.String())
	if err != nil {
		return fmt.Errorf("natsauth: render: %w", err)
	}
	return nil
}

func writeList(b *strings.Builder, name string, allow, deny []string) {
	fmt.Fprintf(b, "        %s: {\n          allow: [\n", name)
	for _, s := range allow {
		fmt.Fprintf(b, "            %s\n", strconv.Quote(s))
	}
	b.WriteString("          ]\n")
	if len(deny) > 0 {
		b.WriteString("          deny: [\n")
		for _, s := range deny {
			fmt.Fprintf(b, "            %s\n", strconv.Quote(s))
		}
		b.WriteString("          ]\n")
	}
	b.WriteString("        }\n")
}
