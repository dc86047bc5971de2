package jobs.jvm;

import com.fasterxml.jackson.core.JsonGenerator;
import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import java.io.IOException;
import java.io.StringWriter;
import java.io.UncheckedIOException;
import java.math.BigInteger;
import java.nio.ByteBuffer;
import java.nio.charset.CharacterCodingException;
import java.nio.charset.CodingErrorAction;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.time.ZoneId;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;
import org.apache.spark.sql.api.java.UDF1;
import org.apache.spark.sql.catalyst.util.DateTimeUtils;
import org.apache.spark.sql.types.ArrayType;
import org.apache.spark.sql.types.DataType;
import org.apache.spark.sql.types.DataTypes;
import org.apache.spark.sql.types.MapType;
import org.apache.spark.sql.types.StructField;
import org.apache.spark.sql.types.StructType;
import org.apache.spark.unsafe.types.UTF8String;
import scala.Option;

/**
 * The decoder of event bodies (jobs/stages/decode.py): a Spark SQL function of the body that
 * parses it once and returns the envelope's typed fields, the decode error, the rescued data, the
 * typed payload of the event's type and what the residency test reads.
 *
 * <p>Values are converted as Spark's from_json converts them (a value that does not fit its type is
 * null and kept as raw text in the rescued data); see docs/design.md for what differs on purpose:
 * a repeated key is a decode error, and the residency test reads every occurrence of a coordinate
 * or origin, also of a body too large or malformed.
 */
public final class Decoder implements UDF1<byte[], Row> {
  private static final long serialVersionUID = 1L;
  // the decode reasons (jobs/contract.py)
  private final String tooLarge;
  private final String invalidUtf8;
  private final String malformed;
  private final String duplicateKey;
  private final String unknownType;
  private final String unknownVersion;
  private final String payloadNotObject;
  private final int maxBodyBytes;
  private final String zone;
  private final StructType envelope;  // without "payload"
  private final String[] types;  // the event types, in the order of the payloads struct
  private final StructType[] payloads;
  private final Map<String, Integer> index = new HashMap<>();  // event type -> position
  private final List<Set<String>> versions = new ArrayList<>();  // known versions, by position
  private final StructType output;
  private transient ZoneId zoneId;

  /** The configuration as JSON (jobs/stages/decode.py writes it). */
  public Decoder(String config) {
    JsonNode c;
    try {
      c = new ObjectMapper().readTree(config);
    } catch (IOException e) {
      throw new IllegalArgumentException("decoder configuration: " + e.getMessage(), e);
    }
    JsonNode reasons = c.get("reasons");
    tooLarge = reasons.get("body_too_large").asText();
    invalidUtf8 = reasons.get("invalid_utf8").asText();
    malformed = reasons.get("malformed_json").asText();
    duplicateKey = reasons.get("duplicate_key").asText();
    unknownType = reasons.get("unknown_event_type").asText();
    unknownVersion = reasons.get("unknown_schema_version").asText();
    payloadNotObject = reasons.get("payload_not_object").asText();
    maxBodyBytes = c.get("max_body_bytes").asInt();
    zone = c.get("zone").asText();
    envelope = (StructType) DataType.fromJson(c.get("envelope").toString());
    JsonNode given = c.get("types");
    types = new String[given.size()];
    payloads = new StructType[given.size()];
    StructType all = new StructType();
    for (int i = 0; i < types.length; i++) {
      JsonNode t = given.get(i);
      types[i] = t.get("name").asText();
      payloads[i] = (StructType) DataType.fromJson(t.get("payload").toString());
      Set<String> known = new HashSet<>();
      t.get("versions").forEach(v -> known.add(v.asText()));
      versions.add(known);
      index.put(types[i], i);
      all = all.add(types[i], payloads[i]);
    }
    StructType more = new StructType()
        .add("lats", DataTypes.createArrayType(DataTypes.DoubleType))
        .add("lons", DataTypes.createArrayType(DataTypes.DoubleType))
        .add("origins", DataTypes.createArrayType(DataTypes.StringType));
    StructType out = envelope;
    out = out.add("payload", DataTypes.StringType).add("_decode_error", DataTypes.StringType)
        .add("_rescued_data", DataTypes.StringType).add("__payloads", all)
        .add("__lat", DataTypes.DoubleType).add("__lon", DataTypes.DoubleType)
        .add("__more_positions", more);
    output = out;
  }

  /** The type of what {@link #call} returns. */
  public String outputType() {
    return output.json();
  }

  @Override
  public Row call(byte[] body) {
    Object[] out = new Object[output.size()];
    int base = envelope.size();
    if (body == null) {
      out[base + 1] = malformed;
      return RowFactory.create(out);
    }
    String text = strictUtf8(body);
    boolean utf8 = text != null;
    if (!utf8) {
      text = new String(body, StandardCharsets.UTF_8);  // invalid bytes replaced, as Spark reads them
    }
    JsonTree tree = new JsonTree(text, body.length <= maxBodyBytes);
    String error = null;
    if (body.length > maxBodyBytes) {
      error = tooLarge;
    } else if (!utf8) {
      error = invalidUtf8;
    } else if (tree.malformed) {
      error = malformed;
    } else if (tree.duplicateKey) {
      error = duplicateKey;
    }
    Map<String, String> rescued = new LinkedHashMap<>();
    Object payload = null;
    if (error != tooLarge && !tree.malformed) {
      Map<String, Object> root = tree.root;
      Object[] fields = struct(root, envelope, rescued, "", "payload");
      System.arraycopy(fields, 0, out, 0, base);
      payload = root.get("payload");
      String type = JsonTree.text(root.get("event_type"));
      String version = JsonTree.text(root.get("schema_version"));
      Integer at = type == null ? null : index.get(type);
      if (error == null) {
        boolean object = payload == null || payload == JsonTree.NULL || payload instanceof Map;
        error = at == null ? unknownType
            : version == null || !versions.get(at).contains(version) ? unknownVersion
            : !object ? payloadNotObject
            : null;
      }
      if (error == null) {
        Object[] typed = new Object[types.length];
        if (payload instanceof Map<?, ?> map) {
          @SuppressWarnings("unchecked")
          Map<String, Object> fieldsOf = (Map<String, Object>) map;
          typed[at] = RowFactory.create(struct(fieldsOf, payloads[at], rescued, "payload.", null));
        }
        out[base + 3] = RowFactory.create(typed);
      } else {
        out[base] = JsonTree.text(payload);
      }
    }
    out[base + 1] = error;
    out[base + 2] = rescued.isEmpty() ? null : json(rescued);
    residency(tree, out, base + 4);
    return RowFactory.create(out);
  }

  /** The first coordinate pair as Spark's get_json_object reads it, and every occurrence when a
   * key is repeated. */
  private static void residency(JsonTree tree, Object[] out, int at) {
    out[at] = tree.lats.isEmpty() ? null : JsonTree.coordinate(tree.lats.get(0));
    out[at + 1] = tree.lons.isEmpty() ? null : JsonTree.coordinate(tree.lons.get(0));
    if (tree.lats.size() > 1 || tree.lons.size() > 1 || tree.origins.size() > 1) {
      List<Double> lats = new ArrayList<>();
      tree.lats.forEach(v -> lats.add(JsonTree.coordinate(v)));
      List<Double> lons = new ArrayList<>();
      tree.lons.forEach(v -> lons.add(JsonTree.coordinate(v)));
      List<String> origins = new ArrayList<>();
      tree.origins.forEach(v -> origins.add(JsonTree.text(v)));
      out[at + 2] = RowFactory.create(lats, lons, origins);
    }
  }

  /**
   * The fields of {@code schema} from {@code object}; the raw text of unknown keys and of values
   * that do not fit go to {@code rescued} (keys prefixed), except the key {@code skip}.
   */
  private Object[] struct(Map<String, Object> object, StructType schema,
      Map<String, String> rescued, String prefix, String skip) {
    StructField[] fields = schema.fields();
    Object[] values = new Object[fields.length];
    for (Map.Entry<String, Object> e : object.entrySet()) {
      if (!schema.getFieldIndex(e.getKey()).isDefined() && !e.getKey().equals(skip)) {
        rescued.put(prefix + e.getKey(), JsonTree.text(e.getValue()));
      }
    }
    for (int i = 0; i < fields.length; i++) {
      Object raw = object.get(fields[i].name());
      if (raw == null || raw == JsonTree.NULL || fields[i].name().equals(skip)) {
        continue;
      }
      values[i] = convert(raw, fields[i].dataType());
      if (values[i] == null) {
        rescued.put(prefix + fields[i].name(), JsonTree.text(raw));
      }
    }
    return values;
  }

  /** {@code value} as {@code type}, or null when it does not fit (as from_json reads it). */
  private Object convert(Object value, DataType type) {
    if (value == JsonTree.NULL) {
      return null;
    }
    if (type == DataTypes.StringType) {
      return JsonTree.text(value);
    }
    if (type == DataTypes.DoubleType) {
      if (value instanceof Number n) {
        return n.doubleValue();
      }
      return value instanceof String s ? special(s) : null;
    }
    if (type == DataTypes.LongType) {
      if (value instanceof Long l) {
        return l;
      }
      return value instanceof BigInteger b && b.bitLength() < 64 ? b.longValue() : null;
    }
    if (type == DataTypes.BooleanType) {
      return value instanceof Boolean ? value : null;
    }
    if (type == DataTypes.TimestampType) {
      return timestamp(value);
    }
    if (type instanceof StructType st) {
      if (!(value instanceof Map<?, ?>)) {
        return null;
      }
      @SuppressWarnings("unchecked")
      Map<String, Object> object = (Map<String, Object>) value;
      Object[] values = new Object[st.size()];
      for (int i = 0; i < values.length; i++) {
        Object raw = object.get(st.fields()[i].name());
        values[i] = raw == null ? null : convert(raw, st.fields()[i].dataType());
      }
      return RowFactory.create(values);
    }
    if (type instanceof ArrayType at) {
      if (!(value instanceof List<?> list)) {
        return null;
      }
      List<Object> out = new ArrayList<>(list.size());
      for (Object v : list) {
        Object converted = convert(v, at.elementType());
        if (converted == null && v != JsonTree.NULL) {
          return null;  // an element that does not fit: the whole array does not
        }
        out.add(converted);
      }
      return out;
    }
    if (type instanceof MapType mt) {
      if (!(value instanceof Map<?, ?> map)) {
        return null;
      }
      Map<String, Object> out = new LinkedHashMap<>();
      for (Map.Entry<?, ?> e : map.entrySet()) {
        Object converted = convert(e.getValue(), mt.valueType());
        if (converted == null && e.getValue() != JsonTree.NULL) {
          return null;
        }
        out.put((String) e.getKey(), converted);
      }
      return out;
    }
    throw new IllegalArgumentException("the decoder cannot read the type " + type);
  }

  private static Double special(String s) {
    switch (s) {
      case "NaN":
        return Double.NaN;
      case "+INF", "+Infinity", "Infinity":
        return Double.POSITIVE_INFINITY;
      case "-INF", "-Infinity":
        return Double.NEGATIVE_INFINITY;
      default:
        return null;
    }
  }

  private Instant timestamp(Object value) {
    if (value instanceof Long seconds) {
      return Instant.ofEpochSecond(seconds);
    }
    if (!(value instanceof String s) || s.isEmpty()) {
      return null;
    }
    if (zoneId == null) {
      zoneId = ZoneId.of(zone);
    }
    UTF8String text = UTF8String.fromString(s);
    Option<Object> micros = DateTimeUtils.stringToTimestamp(text, zoneId);
    if (micros.isEmpty()) {
      micros = DateTimeUtils.stringToTimestamp(DateTimeUtils.cleanLegacyTimestampStr(text), zoneId);
    }
    if (micros.isEmpty()) {
      return null;
    }
    long us = (Long) micros.get();
    return Instant.ofEpochSecond(Math.floorDiv(us, 1_000_000L), Math.floorMod(us, 1_000_000L) * 1000);
  }

  /** The body as text, or null when it is not valid UTF-8. */
  private static String strictUtf8(byte[] body) {
    try {
      return StandardCharsets.UTF_8.newDecoder().onMalformedInput(CodingErrorAction.REPORT)
          .onUnmappableCharacter(CodingErrorAction.REPORT).decode(ByteBuffer.wrap(body)).toString();
    } catch (CharacterCodingException e) {
      return null;
    }
  }

  private static String json(Map<String, String> map) {
    StringWriter out = new StringWriter();
    try (JsonGenerator g = JsonTree.FACTORY.createGenerator(out)) {
      g.writeStartObject();
      for (Map.Entry<String, String> e : map.entrySet()) {
        g.writeFieldName(e.getKey());
        if (e.getValue() == null) {
          g.writeNull();
        } else {
          g.writeString(e.getValue());
        }
      }
      g.writeEndObject();
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    return out.toString();
  }
}
