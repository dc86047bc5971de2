package jobs.jvm;

import java.time.Instant;
import org.apache.spark.sql.Row;
import org.apache.spark.sql.RowFactory;

/** What the stateful stages do with Spark's rows. */
final class Rows {
  private Rows() {}

  /** Microseconds since the epoch of a timestamp as Spark hands it over (either Java type). */
  static long micros(Object value) {
    if (value instanceof Instant instant) {
      return Math.addExact(Math.multiplyExact(instant.getEpochSecond(), 1_000_000L),
          instant.getNano() / 1000);
    }
    java.sql.Timestamp ts = (java.sql.Timestamp) value;
    return Math.floorDiv(ts.getTime(), 1000L) * 1_000_000L + ts.getNanos() / 1000;
  }

  /** Epoch seconds of a row's timestamp column, NaN for null (as the rules take times). */
  static double seconds(Row row, int index) {
    return row.isNullAt(index) ? Double.NaN : micros(row.get(index)) / 1e6;
  }

  /** The row with more values at its end. */
  static Row with(Row row, Object... more) {
    Object[] values = new Object[row.length() + more.length];
    for (int i = 0; i < row.length(); i++) {
      values[i] = row.get(i);
    }
    System.arraycopy(more, 0, values, row.length(), more.length);
    return RowFactory.create(values);
  }

  /** Two rows' values of one column (a string or a number), nulls last. */
  @SuppressWarnings({"unchecked", "rawtypes"})
  static int compare(Row a, Row b, int index) {
    if (a.isNullAt(index) || b.isNullAt(index)) {
      return Boolean.compare(a.isNullAt(index), b.isNullAt(index));
    }
    return ((Comparable) a.get(index)).compareTo(b.get(index));
  }
}
